//! The systemd readiness protocol: one datagram per state change on the Unix
//! socket named by `NOTIFY_SOCKET`.
//!
//! supd marks an instance `online` when `READY=1` arrives (with
//! `wait_ready`), and a rolling reload waits for it before stopping the old
//! instance; so it is sent only once the listener accepts. Written by hand
//! (a dozen lines) rather than with the `sd-notify` crate, which treats an
//! `@abstract` address as a file path.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::env;

/// Sends `state` (e.g. `"READY=1"`, `"STOPPING=1"`, `"STATUS=…"`) to
/// `NOTIFY_SOCKET`. Does nothing, successfully, when the variable is unset:
/// a service started by hand has nobody to tell.
///
/// # Errors
/// When the socket cannot be reached or the datagram is cut short.
pub fn notify(state: &str) -> io::Result<()> {
    let Some(path) = env::var("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let addr = address(&path)?;
    let socket = UnixDatagram::unbound()?;
    let sent = socket.send_to_addr(state.as_bytes(), &addr)?;
    if sent == state.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification cut short",
        ))
    }
}

/// `@name` is a Linux abstract-namespace address, anything else a path.
fn address(raw: &str) -> io::Result<SocketAddr> {
    match raw.strip_prefix('@') {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        _ => SocketAddr::from_pathname(raw),
    }
}

/// [`notify`], logging a failure instead of returning it: a supervisor that
/// cannot be told is not a reason to stop serving.
pub fn notify_or_log(name: &str, state: &str) {
    if let Err(e) = notify(state) {
        eprintln!("{name}: cannot send {state} to NOTIFY_SOCKET: {e}");
    }
}
