//! Listening sockets the daemon owns for apps with a `port`.
//!
//! The daemon binds the port (SO_REUSEADDR, SO_REUSEPORT) and keeps the
//! socket for as long as the app exists; every instance gets the same socket
//! as fd 3. The kernel's accept queue therefore outlives any worker: during a
//! reload, a crash or a restart, clients wait in the backlog for the next
//! `accept` instead of being refused. The daemon itself never accepts, and
//! leaves the socket blocking (that flag is shared with every instance: a
//! blocking-accept worker such as Python's must not find it non-blocking).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// The backlog: connections the kernel queues while no worker accepts.
const BACKLOG: i32 = 4096;

/// Binds `0.0.0.0:port` for an app, close-on-exec (each child gets its own
/// copy at fd 3, placed by the spawner).
pub fn bind(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}
