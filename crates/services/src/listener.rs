//! The listening socket: inherited from the supervisor, or bound here.
//!
//! supd (like systemd) binds the port itself and hands every instance the
//! same listening socket on fd 3, announced by `LISTEN_FDS=1` and
//! `LISTEN_PID=<our pid>`. Taking it instead of binding is what makes
//! cluster mode work (many processes, one port) and what keeps clients
//! queued in the kernel's backlog while an instance restarts.

use std::net::{SocketAddr, TcpListener};

use anyhow::{Context as _, Result};

use crate::env;

/// Where the listener came from, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// fd 3, handed over by the supervisor (socket activation).
    Inherited,
    /// Bound by this process from `HOST` and `PORT`.
    Bound,
}

/// A listening socket, non-blocking and ready for tokio.
#[derive(Debug)]
pub struct Listener {
    /// The socket itself.
    pub socket: TcpListener,
    /// Its local address.
    pub addr: SocketAddr,
    /// Where it came from.
    pub origin: Origin,
}

/// Takes fd 3 when `LISTEN_FDS` is 1 (or more) and `LISTEN_PID` is our pid, else binds
/// `HOST` (default 127.0.0.1) : `PORT` (default `default_port`).
///
/// Call this before any thread is started: taking the inherited socket
/// removes `LISTEN_FDS`/`LISTEN_PID` from the environment, so that our own
/// children never mistake it for theirs.
///
/// # Errors
/// When the inherited fd is not a TCP listening socket, when `PORT` does not
/// parse, or when binding fails.
pub fn acquire(default_port: u16) -> Result<Listener> {
    let (socket, origin) = if activated() {
        let socket = listenfd::ListenFd::from_env()
            .take_tcp_listener(0)
            .context("LISTEN_FDS=1, but fd 3 is not a TCP socket")?
            .context("LISTEN_FDS=1, but fd 3 is missing")?;
        (socket, Origin::Inherited)
    } else {
        let host = env::var_or("HOST", "127.0.0.1");
        let port: u16 = env::parse_or("PORT", default_port)?;
        let socket = TcpListener::bind((host.as_str(), port))
            .with_context(|| format!("cannot listen on {host}:{port}"))?;
        (socket, Origin::Bound)
    };
    socket
        .set_nonblocking(true)
        .context("set the listener non-blocking")?;
    let addr = socket.local_addr().context("read the listener's address")?;
    Ok(Listener {
        socket,
        addr,
        origin,
    })
}

/// Whether the systemd socket-activation variables are meant for us: at
/// least one socket (`LISTEN_FDS` >= 1; we take the first, fd 3) and
/// `LISTEN_PID` is our own pid. Variables inherited from a parent that was
/// itself activated describe the parent's descriptors, not ours.
fn activated() -> bool {
    let count = env::var("LISTEN_FDS").and_then(|n| n.trim().parse::<u32>().ok());
    let pid = env::var("LISTEN_PID").and_then(|p| p.trim().parse::<u32>().ok());
    count.is_some_and(|n| n >= 1) && pid == Some(std::process::id())
}
