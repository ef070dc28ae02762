// supd's Node preload, loaded through NODE_OPTIONS=--require for every
// instance of an app with a `port`, and of a Node app in cluster mode
// without one, whose port supd learns (SUPD_LEARN_PORT).
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
//
// Without a port (SUPD_LEARN_PORT), the app's first listen(port, host) asks
// supd over the IPC channel for the socket of that port; supd binds it (the
// app's port from then on: later instances get it as fd 3) and sends it
// back as Node's own IPC sends a server. The app's server then listens on
// it, as above. If supd refuses (another port than the app's), the reason
// goes to stderr and the server emits it as an 'error', as a failed bind.
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

// The port a listen() call names, if supd can share it: a number (or a
// string of digits) from 1 to 65535, not a pipe path, a descriptor or a
// handle; `undefined` otherwise.
function sharedPort(first, options) {
  if (options && (options.fd !== undefined || options._handle || options.handle || options.path)) {
    return undefined;
  }
  const wanted = options ? options.port : first;
  if (typeof wanted === 'string' && !/^\d+$/.test(wanted)) return undefined;
  const port = Number(wanted);
  return Number.isInteger(port) && port > 0 && port <= 65535 ? port : undefined;
}

if (
  !process.env.LISTEN_FDS &&
  process.env.SUPD_LEARN_PORT === '1' &&
  typeof process.send === 'function'
) {
  const listen = net.Server.prototype.listen;
  let asked = false;
  net.Server.prototype.listen = function (...args) {
    const first = args[0];
    const options = first !== null && typeof first === 'object' ? first : undefined;
    const port = asked || first === undefined ? undefined : sharedPort(first, options);
    if (port === undefined) return listen.apply(this, args);
    asked = true;
    const host = options ? options.host : typeof args[1] === 'string' ? args[1] : undefined;
    const callback = args.find((a) => typeof a === 'function');
    const server = this;
    const answer = (msg, handle) => {
      if (msg === null || typeof msg !== 'object') return;
      if (msg.supd !== 'socket' && msg.supd !== 'refused') return;
      process.removeListener('message', answer);
      if (msg.supd === 'refused' || !handle) {
        const why = msg.error || 'no socket came with the answer';
        process.stderr.write(`supd: ${why}\n`);
        const err = new Error(`supd: ${why}`);
        err.code = 'ESUPDPORT';
        server.emit('error', err);
        return;
      }
      adopt(server, undefined, port);
      if (callback) listen.call(server, handle, callback);
      else listen.call(server, handle);
    };
    process.on('message', answer);
    process.send({ supd: 'listen', port, host: host === undefined ? null : host });
    return this;
  };
}

// For the table test of the rule (tests/fixtures/preload-rules.js).
module.exports = { sameHost, sharedPort };
