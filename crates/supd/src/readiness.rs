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
//!
//! The same channel carries the request of an app whose port supd learns
//! (a Node app in cluster mode without a `port`): the preload sends
//! `{"supd":"listen","port":P,"host":H}` at the app's first `listen()`, and
//! the daemon answers with the listening socket as Node's own IPC does
//! ([`send_socket`]: a `NODE_HANDLE` message with the descriptor in
//! `SCM_RIGHTS`), or with why not ([`send_refusal`]).

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
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
    /// The preload asks for the socket of the port (and host, as the app
    /// wrote it) the app's first `listen()` named.
    Listen {
        /// The port.
        port: u16,
        /// The host, if the app named one.
        host: Option<String>,
    },
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

/// Parses one line of a Node IPC channel (JSON serialization): PM2's
/// wait_ready (`process.send('ready')`), or the preload's request for a
/// learned port's socket. Anything else (the app's own messages, Node's
/// `NODE_HANDLE_ACK`) is not for us.
pub fn parse_ipc(line: &[u8]) -> Option<Notice> {
    let line = line.trim_ascii();
    if line == b"\"ready\"" {
        return Some(Notice::Ready);
    }
    if !line.starts_with(b"{") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    if value.get("supd")?.as_str()? != "listen" {
        return None;
    }
    let port = u16::try_from(value.get("port")?.as_u64()?).ok()?;
    let host = value.get("host").and_then(|h| h.as_str()).map(String::from);
    Some(Notice::Listen { port, host })
}

/// Sends the listening `socket` for `port` on a Node IPC channel as Node's
/// own `child.send(message, server)` does: the child's
/// `process.on('message', (msg, server))` gets `{"supd":"socket","port":P}`
/// and a `net.Server` on that socket.
pub fn send_socket(ipc: BorrowedFd<'_>, socket: BorrowedFd<'_>, port: u16) -> io::Result<()> {
    let line = serde_json::json!({
        "cmd": "NODE_HANDLE",
        "type": "net.Server",
        "msg": { "supd": "socket", "port": port },
    });
    send_line(ipc, &line, Some(socket))
}

/// Tells the preload why it gets no socket: `{"supd":"refused","error":…}`.
pub fn send_refusal(ipc: BorrowedFd<'_>, error: &str) -> io::Result<()> {
    let line = serde_json::json!({ "supd": "refused", "error": error });
    send_line(ipc, &line, None)
}

/// Writes `message` as one JSON line on `ipc`, with `fd` attached
/// (`SCM_RIGHTS`, on the same write, as Node expects it).
fn send_line(
    ipc: BorrowedFd<'_>,
    message: &serde_json::Value,
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let bytes = format!("{message}\n").into_bytes();
    let fds = fd.map(|fd| [fd.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    let sent = sendmsg::<()>(
        ipc.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent == bytes.len() {
        Ok(())
    } else {
        // A line cut short would leave the channel unparseable.
        Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            bytes.len()
        )))
    }
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
                    partial[..whole]
                        .split(|&b| b == b'\n')
                        .filter_map(parse_ipc)
                        .for_each(&on_notice);
                    partial.drain(..whole);
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

    #[test]
    fn parses_ipc_lines() {
        let listen = |port, host: Option<&str>| {
            Some(Notice::Listen {
                port,
                host: host.map(String::from),
            })
        };
        let table: &[(&[u8], Option<Notice>)] = &[
            (b"\"ready\"", Some(Notice::Ready)),
            (b" \"ready\"\r", Some(Notice::Ready)),
            (br#"{"supd":"listen","port":3000}"#, listen(3000, None)),
            (
                br#"{"supd":"listen","port":3000,"host":null}"#,
                listen(3000, None),
            ),
            (
                br#"{"supd":"listen","port":8080,"host":"127.0.0.1"}"#,
                listen(8080, Some("127.0.0.1")),
            ),
            // Not a port, or not for us.
            (br#"{"supd":"listen","port":70000}"#, None),
            (br#"{"supd":"listen","port":"3000"}"#, None),
            (br#"{"supd":"listen"}"#, None),
            (br#"{"cmd":"NODE_HANDLE_ACK"}"#, None),
            (br#"{"hello":"world"}"#, None),
            (b"\"hello\"", None),
            (b"{not json", None),
            (b"", None),
        ];
        for (line, want) in table {
            assert_eq!(&parse_ipc(line), want, "{}", String::from_utf8_lossy(line));
        }
    }

    /// A socket sent on a channel arrives with its line, as one message.
    #[test]
    fn a_socket_travels_with_its_line() {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use std::os::fd::AsFd;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        send_socket(ours.as_fd(), listener.as_fd(), 3000).unwrap();
        let mut buf = [0u8; 256];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let got = recvmsg::<()>(
            theirs.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let fds: Vec<_> = got
            .cmsgs()
            .unwrap()
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        let n = got.bytes;
        assert_eq!(fds.len(), 1);
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "{\"cmd\":\"NODE_HANDLE\",\"msg\":{\"port\":3000,\"supd\":\"socket\"},\"type\":\"net.Server\"}\n"
        );
        send_refusal(ours.as_fd(), "no").unwrap();
        let mut line = [0u8; 64];
        let n = std::io::Read::read(&mut &theirs, &mut line).unwrap();
        assert_eq!(&line[..n], b"{\"error\":\"no\",\"supd\":\"refused\"}\n");
        // SAFETY: received just now, ours to close.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) });
    }
}
