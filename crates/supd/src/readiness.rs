//! How an instance says it is ready: systemd's notify protocol from any
//! language, or PM2's `process.send('ready')` from Node.
//!
//! Each process gets its own `NOTIFY_SOCKET` (an abstract Unix datagram
//! socket), so a datagram says which process spoke even when a helper such as
//! `systemd-notify` sends it. When the app's readiness waits (`wait_ready`,
//! or a Node app with a `port`: see `AppConfig::readiness`), a process also
//! gets a Node IPC channel: one end of a socketpair announced by
//! `NODE_CHANNEL_FD`, in JSON serialization, where `process.send('ready')`
//! (the app's, or supd's preload's once the server listens) arrives as
//! `"ready"\n`.

use std::io;
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{UnixDatagram, UnixStream};
use tokio::sync::RwLock;

/// Something an instance told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `READY=1`, or `process.send('ready')`.
    Ready,
    /// `STOPPING=1`.
    Stopping,
    /// `STATUS=…`.
    Status(String),
    /// `WATCHDOG=1`: a keep-alive.
    Watchdog,
}

/// The channels of one process, daemon side.
pub struct Channels {
    /// Receives the process's notify datagrams.
    pub notify: UnixDatagram,
    /// The value of `NOTIFY_SOCKET` (`@name` for the abstract namespace).
    pub notify_address: String,
    /// Our end of the Node IPC channel, and the child's end.
    pub ipc: Option<(UnixStream, OwnedFd)>,
}

/// Creates the notify socket and, if `node_ipc`, the IPC socketpair.
pub fn channels(node_ipc: bool) -> io::Result<Channels> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // The image's start time keeps names unique after `update` re-executes
    // the daemon (same pid, counter back at 0, old sockets still bound).
    static IMAGE: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let image = IMAGE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    let name = format!(
        "supd/{}/{image}/notify/{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
    socket.set_nonblocking(true)?;
    let notify = UnixDatagram::from_std(socket)?;
    let ipc = if node_ipc {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        Some((UnixStream::from_std(ours)?, OwnedFd::from(theirs)))
    } else {
        None
    };
    Ok(Channels {
        notify,
        notify_address: format!("@{name}"),
        ipc,
    })
}

/// The channels of a process started by the daemon's previous image: its
/// notify socket and our end of its IPC channel, as handed over.
pub fn adopt(
    notify: OwnedFd,
    ipc: Option<OwnedFd>,
) -> io::Result<(UnixDatagram, Option<UnixStream>)> {
    let notify = std::os::unix::net::UnixDatagram::from(notify);
    notify.set_nonblocking(true)?;
    let ipc = ipc
        .map(|fd| {
            let stream = std::os::unix::net::UnixStream::from(fd);
            stream.set_nonblocking(true)?;
            UnixStream::from_std(stream)
        })
        .transpose()?;
    Ok((UnixDatagram::from_std(notify)?, ipc))
}

/// Parses one notify datagram: `KEY=VALUE` lines.
pub fn parse_notify(datagram: &[u8]) -> Vec<Notice> {
    String::from_utf8_lossy(datagram)
        .lines()
        .filter_map(|line| match line.split_once('=')? {
            ("READY", "1") => Some(Notice::Ready),
            ("STOPPING", "1") => Some(Notice::Stopping),
            ("WATCHDOG", "1") => Some(Notice::Watchdog),
            ("STATUS", text) => Some(Notice::Status(text.to_string())),
            _ => None,
        })
        .collect()
}

/// Closed (write-locked) while an `update` hands the app over. Notices are
/// read only while it is open, so those sent meanwhile wait in their
/// sockets, which the next image takes over and reads, instead of being
/// read by this image and lost with it.
pub type Gate = Arc<RwLock<()>>;

/// Reads one process's notify socket and IPC channel, calling `on_notice`
/// for each notice, until the returned future is dropped. Everything
/// waiting is read at once under `gate`, without an await, so once a
/// freeze holds the gate no notice is being read.
pub async fn listen(
    notify: UnixDatagram,
    mut ipc: Option<UnixStream>,
    gate: Gate,
    on_notice: impl Fn(Notice),
) {
    let mut buf = vec![0u8; 4096];
    // IPC bytes after the last newline: the start of a message.
    let mut partial = Vec::new();
    loop {
        let ready = tokio::select! {
            ready = notify.readable() => ready,
            ready = async { ipc.as_ref()?.readable().await.ok() }, if ipc.is_some() => {
                ready.ok_or_else(|| io::Error::other("the IPC channel failed"))
            }
        };
        if ready.is_err() {
            return;
        }
        let _open = gate.read().await;
        loop {
            match notify.try_recv(&mut buf) {
                Ok(n) => parse_notify(&buf[..n]).into_iter().for_each(&on_notice),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        while let Some(stream) = &ipc {
            match stream.try_read(&mut buf) {
                Ok(0) => ipc = None,
                Ok(n) => {
                    partial.extend_from_slice(&buf[..n]);
                    let whole = memchr::memrchr(b'\n', &partial).map_or(0, |i| i + 1);
                    // PM2's wait_ready: process.send('ready') in JSON lines.
                    let ready = partial[..whole]
                        .split(|&b| b == b'\n')
                        .filter(|line| line.trim_ascii() == b"\"ready\"")
                        .count();
                    partial.drain(..whole);
                    (0..ready).for_each(|_| on_notice(Notice::Ready));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => ipc = None,
            }
        }
    }
}

/// Tells our own supervisor (systemd with `Type=notify`) about our state,
/// e.g. `READY=1`, if it gave us a `NOTIFY_SOCKET`.
pub fn tell_supervisor(state: &str) {
    let Some(address) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let address = address.to_string_lossy().into_owned();
    let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|socket| {
        match address.strip_prefix('@') {
            Some(name) => {
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &address),
        }
    });
    if let Err(e) = sent {
        tracing::warn!("cannot notify {address}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_notify_lines() {
        assert_eq!(
            parse_notify(b"STATUS=warming up\nREADY=1\nMAINPID=4\nSTOPPING=1\nWATCHDOG=1"),
            vec![
                Notice::Status("warming up".into()),
                Notice::Ready,
                Notice::Stopping,
                Notice::Watchdog
            ]
        );
        assert!(parse_notify(b"\xff\xfe").is_empty());
    }
}
