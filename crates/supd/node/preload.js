// supd's Node preload, loaded through NODE_OPTIONS=--require for every
// instance of an app with a `port`.
//
// It lets an unmodified app written for PM2's cluster mode, which calls
// server.listen(PORT), run under supd's cluster mode: the first listen on
// PORT takes the socket supd hands over as fd 3 instead of binding. An app
// that listens on {fd: 3} itself gets the rest too. Once that socket
// listens it tells supd the instance is ready (PM2's wait_ready protocol,
// when supd opened the IPC channel), says so on stderr when the app asked
// for another host than the one supd's socket listens on, and on
// SIGINT/SIGTERM drains the way every supd-aware server does
// (docs/cluster.md, "The drain"): stop accepting, answer every request that
// arrives or is in flight with `Connection: close`, close a connection that
// stays idle only after IDLE_GRACE_MS, exit once every connection is closed.
// Apps that handle the signal themselves are left alone.
'use strict';
const net = require('net');

// How long a connection may stay idle once the drain has started: time for
// a client using it to send its next request, and short enough to drain
// inside supd's default kill_timeout (1.6 s). The services use the same.
const IDLE_GRACE_MS = 1000;

// Addresses that mean "every interface", and what "localhost" may be.
const ANY = new Set(['0.0.0.0', '::']);
const LOOPBACK = new Set(['127.0.0.1', '::1']);

// An address as Node prints it, without brackets or an IPv4-mapped prefix.
function canonical(host) {
  const h = String(host).toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h.startsWith('::ffff:') && net.isIPv4(h.slice(7)) ? h.slice(7) : h;
}

// Whether a socket listening on `actual` is where an app that asked for
// `asked` meant to listen: the same address, "localhost" for a loopback
// address, or "every interface" for either form of it.
function sameHost(asked, actual) {
  const a = canonical(asked);
  const b = canonical(actual);
  return a === b || (a === 'localhost' && LOOPBACK.has(b)) || (ANY.has(a) && ANY.has(b));
}

// `host:port`, with brackets for IPv6.
function hostPort(host, port) {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

// The drain, for `server`: on the stop signal, unless the app handles that
// signal itself.
function drainOnStop(server) {
  let draining = false;
  // Responses not finished yet: those in flight when the drain starts.
  const open = new Set();
  server.prependListener('request', (req, res) => {
    if (draining) {
      res.setHeader('Connection', 'close');
      return;
    }
    open.add(res);
    res.once('close', () => open.delete(res));
  });
  const stop = (signal) => {
    // `once` removed ours: any listener left is the app's own.
    if (process.listenerCount(signal) > 0) return;
    draining = true;
    for (const res of open) {
      if (!res.headersSent) res.setHeader('Connection', 'close');
    }
    // A response whose headers went out before the drain leaves its
    // connection idle when it ends, maybe after the sweep below: Node
    // closes it after this much idleness instead of its 5 s.
    server.keepAliveTimeout = IDLE_GRACE_MS;
    // net's close only stops accepting; http's (Node >= 19) would also
    // close idle keep-alive connections at once, under a request a client
    // may have sent already.
    net.Server.prototype.close.call(server, () => process.exit(0));
    setTimeout(() => {
      if (server.closeIdleConnections) server.closeIdleConnections();
    }, IDLE_GRACE_MS);
  };
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, stop);
}

// What the preload does for the server on fd 3 once it listens. `asked` is
// the host the app's own listen() named, if any.
function adopt(server, asked, port) {
  server.once('listening', () => {
    if (process.send) process.send('ready');
    const actual = server.address() && server.address().address;
    if (asked !== undefined && actual && !sameHost(asked, actual)) {
      process.stderr.write(
        `supd: the app asked to listen on ${hostPort(asked, port)}; supd's socket for port ${port} ` +
          `listens on ${hostPort(actual, port)} (set host in the ecosystem file)\n`,
      );
    }
    drainOnStop(server);
  });
}

if (process.env.LISTEN_FDS && process.env.LISTEN_PID === String(process.pid)) {
  const port = Number(process.env.PORT);
  const listen = net.Server.prototype.listen;
  let taken = false;
  net.Server.prototype.listen = function (...args) {
    const first = args[0];
    const options = first !== null && typeof first === 'object' ? first : undefined;
    if (taken || first === undefined) return listen.apply(this, args);
    if (options && options.fd === 3) {
      taken = true;
      adopt(this, undefined, port);
      return listen.apply(this, args);
    }
    const wanted = options ? options.port : first;
    if (Number(wanted) !== port) return listen.apply(this, args);
    taken = true;
    const asked = options ? options.host : typeof args[1] === 'string' ? args[1] : undefined;
    adopt(this, asked, port);
    const callback = args.find((a) => typeof a === 'function');
    return callback ? listen.call(this, { fd: 3 }, callback) : listen.call(this, { fd: 3 });
  };
}

// For the table test of the rule (tests/fixtures/preload-rules.js).
module.exports = { sameHost };
