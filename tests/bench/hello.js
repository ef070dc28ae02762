// The trivial HTTP app used by every cluster benchmark scenario (tests/bench/cluster.py).
//
// - Under supd, the daemon owns the listening socket and hands it over as fd 3
//   (LISTEN_FDS=1, systemd socket activation): listen on {fd: 3}.
// - Under PM2 cluster mode, listen on process.env.PORT (PM2's master shares it).
// - GET / answers 200 "hello from <instance>" (NODE_APP_INSTANCE).
// - Once listening, process.send('ready') when an IPC channel exists
//   (PM2's wait_ready protocol; supd speaks it too).
// - SIGINT/SIGTERM: stop accepting, let in-flight requests finish, exit.
'use strict';

const http = require('http');

const instance = process.env.NODE_APP_INSTANCE || '0';
const body = `hello from ${instance}\n`;

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && (req.url === '/' || req.url.startsWith('/?'))) {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
    res.end('not found\n');
  }
});

const onListening = () => {
  if (typeof process.send === 'function') process.send('ready');
};

if (process.env.LISTEN_FDS && parseInt(process.env.LISTEN_FDS, 10) >= 1) {
  server.listen({ fd: 3 }, onListening);
} else {
  server.listen(parseInt(process.env.PORT || '3000', 10), '127.0.0.1', onListening);
}

let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  // Stop accepting; keep-alive connections that are idle are closed so close() can finish.
  server.close(() => process.exit(0));
  if (typeof server.closeIdleConnections === 'function') server.closeIdleConnections();
  // Bounded: never hang the supervisor's stop beyond a few seconds.
  setTimeout(() => process.exit(0), 4000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
// PM2 sends 'shutdown' over IPC on Windows-like setups; harmless elsewhere.
process.on('message', (msg) => { if (msg === 'shutdown') shutdown(); });
