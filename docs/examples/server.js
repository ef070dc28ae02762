// The HTTP server of docs/getting-started.md: it answers every request with
// the pid of the instance that served it, so `curl` shows the workers take
// turns in cluster mode.
//
// It listens with a plain `listen(PORT)`, as apps written for PM2 do (3000
// when PORT is unset). Run alone, that binds the port; under supd with a
// `port` the preload hands it the daemon's socket instead, so two instances
// share the port and a reload refuses no connection (docs/cluster.md).
// `--verbose` logs one line per request.

const http = require("node:http");

const verbose = process.argv.includes("--verbose");
const port = Number(process.env.PORT || 3000);

const server = http.createServer((req, res) => {
  if (verbose) console.log(`${req.method} ${req.url}`);
  res.end(`hello from pid ${process.pid}\n`);
});

server.listen(port, () => console.log(`listening on port ${port}`));
