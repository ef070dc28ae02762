// supd's Node preload, loaded through NODE_OPTIONS=--require for every
// instance of an app with a `port`.
//
// It lets an unmodified app written for PM2's cluster mode, which calls
// server.listen(PORT), run under supd's cluster mode: the first listen on
// PORT takes the socket supd hands over as fd 3 instead of binding. Once that
// socket listens it tells supd the instance is ready (PM2's wait_ready
// protocol, when supd opened the IPC channel), and on SIGINT/SIGTERM it stops
// accepting and exits once in-flight requests are answered (supd SIGKILLs
// after kill_timeout otherwise). Apps that already listen on {fd: 3} or
// handle their own signals are left alone.
'use strict';
const net = require('net');

if (process.env.LISTEN_FDS && process.env.LISTEN_PID === String(process.pid)) {
  const port = Number(process.env.PORT);
  const listen = net.Server.prototype.listen;
  let taken = false;
  net.Server.prototype.listen = function (...args) {
    const first = args[0];
    const wanted = first !== null && typeof first === 'object' ? first.port : first;
    if (taken || first === undefined || Number(wanted) !== port) {
      return listen.apply(this, args);
    }
    taken = true;
    const server = this;
    const callback = args.find((a) => typeof a === 'function');
    server.once('listening', () => {
      if (process.send) process.send('ready');
      const stop = () => {
        server.close(() => process.exit(0));
        // Let idle keep-alive sockets go so close() can finish.
        if (server.closeIdleConnections) server.closeIdleConnections();
      };
      for (const signal of ['SIGINT', 'SIGTERM']) {
        if (process.listenerCount(signal) === 0) process.once(signal, stop);
      }
    });
    return callback ? listen.call(server, { fd: 3 }, callback) : listen.call(server, { fd: 3 });
  };
}
