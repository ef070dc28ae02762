// The trivial HTTP app used by every cluster benchmark scenario (tests/bench/cluster.py).
//
// - Under supd, the daemon owns the listening socket and hands it over as fd 3
//   (LISTEN_FDS=1, systemd socket activation): listen on {fd: 3}.
// - Under PM2 cluster mode, listen on process.env.PORT (PM2's master shares it).
// - GET / answers 200 "hello from <instance>" (NODE_APP_INSTANCE).
// - Once listening, process.send('ready') when an IPC channel exists
//   (PM2's wait_ready protocol; supd speaks it too).
// - SIGINT/SIGTERM: the drain of docs/cluster.md ("The drain"), as supd's Node
//   preload does it: stop accepting, answer every request that arrives or is in
//   flight with `Connection: close`, close a connection left idle only after
//   1 s, exit once the last connection is closed. Closing idle keep-alive
//   connections at once would lose a request a client has just sent on one.
'use strict';

const http = require('http');

const instance = process.env.NODE_APP_INSTANCE || '0';
const body = `hello from ${instance}\n`;

// How long a connection may stay idle once the drain has started.
const IDLE_GRACE_MS = 1000;
let stopping = false;

const server = http.createServer((req, res) => {
  if (stopping) res.setHeader('Connection', 'close');
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

function shutdown() {
  if (stopping) return;
  stopping = true;
  // A connection whose response is under way goes idle after it: closed after the grace.
  server.keepAliveTimeout = IDLE_GRACE_MS;
  // net's close only stops accepting; http's (Node >= 19) would also close the idle
  // keep-alive connections at once, under a request a client may have sent already.
  require('net').Server.prototype.close.call(server, () => process.exit(0));
  setTimeout(() => {
    if (typeof server.closeIdleConnections === 'function') server.closeIdleConnections();
  }, IDLE_GRACE_MS);
  // Bounded: never hang the supervisor's stop beyond a few seconds.
  setTimeout(() => process.exit(0), 4000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
// PM2 sends 'shutdown' over IPC on Windows-like setups; harmless elsewhere.
process.on('message', (msg) => { if (msg === 'shutdown') shutdown(); });
