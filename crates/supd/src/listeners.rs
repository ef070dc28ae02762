//! Listening sockets the daemon owns for apps with a `port`: one
//! SO_REUSEPORT socket per instance slot, all in one reuseport group.
//!
//! The daemon binds them and keeps each for as long as its slot exists;
//! instance N gets socket N as fd 3. The kernel spreads new connections over
//! the group (evenly, whatever the workers' accept habits), and a slot's
//! accept queue outlives its worker: during a reload, a crash or a restart,
//! clients wait in that backlog for the next `accept` instead of being
//! refused. The daemon never accepts, and leaves the sockets blocking (that
//! flag is shared with the instances: a blocking-accept worker such as
//! Python's must not find it non-blocking).
//!
//! Which sockets receive new connections is steered by a classic BPF
//! program on the group (`SO_ATTACH_REUSEPORT_CBPF`): `hash % active`, where
//! sockets are indexed in the order they joined, i.e. by slot. Scaling down
//! first steers connections away from the slots being removed, lets their
//! queues drain, and only then closes them, so no queued connection is reset.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use socket2::{Domain, Socket, Type};

/// The backlog: connections the kernel queues per slot while no worker accepts.
const BACKLOG: i32 = 4096;
/// `SKF_AD_RXHASH`: the ancillary load of the packet's flow hash.
const SKF_AD_RXHASH: i32 = 32;

/// The sockets of one app's port, indexed by slot.
pub struct SlotSockets {
    port: u16,
    sockets: Vec<Socket>,
}

impl SlotSockets {
    /// Binds the socket of slot 0 (proving the port is ours to use).
    ///
    /// SO_REUSEPORT would let us join a group another process (another
    /// supd's app, say) already listens in, and the kernel would then split
    /// that port's connections between two unrelated services. So a probe
    /// bind without it comes first: it fails while anyone listens there.
    pub fn bind(port: u16) -> io::Result<SlotSockets> {
        probe(port)?;
        let mut sockets = SlotSockets {
            port,
            sockets: Vec::new(),
        };
        sockets.ensure(1)?;
        Ok(sockets)
    }

    /// The sockets of an app handed over by the daemon's previous image.
    pub fn adopt(port: u16, sockets: Vec<OwnedFd>) -> SlotSockets {
        SlotSockets {
            port,
            sockets: sockets.into_iter().map(Socket::from).collect(),
        }
    }

    /// Each slot's socket, to hand over.
    pub fn fds(&self) -> Vec<RawFd> {
        self.sockets.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket of `slot`, binding it (and any below it) first if needed.
    pub fn socket(&mut self, slot: u32) -> io::Result<BorrowedFd<'_>> {
        self.ensure(slot as usize + 1)?;
        Ok(self.sockets[slot as usize].as_fd())
    }

    fn ensure(&mut self, count: usize) -> io::Result<()> {
        while self.sockets.len() < count {
            self.sockets.push(bind_one(self.port)?);
        }
        Ok(())
    }

    /// Steers new connections to slots `0..active`, then closes the sockets
    /// of slots at or above `keep` (which must have no worker left).
    pub fn route(&mut self, active: u32, keep: u32) -> io::Result<()> {
        let active = active.max(1).min(self.sockets.len() as u32);
        if let Some(first) = self.sockets.first() {
            steer(first, active)?;
        }
        self.sockets.truncate(keep.max(1).max(active) as usize);
        Ok(())
    }

    /// Connections waiting in the accept queue of `slot` (0 if it has no socket).
    pub fn queued(&self, slot: u32) -> u32 {
        self.sockets
            .get(slot as usize)
            .map_or(0, |s| accept_queue(s).unwrap_or(0))
    }
}

/// Fails with "port P is already in use by another process" when a socket
/// listens on `port`. SO_REUSEADDR only, so a port left in TIME_WAIT by a
/// previous run is still ours.
fn probe(port: u16) -> io::Result<()> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    match socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("port {port} is already in use by another process"),
        )),
        other => other,
    }
}

fn bind_one(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

/// Attaches `A = flow hash; A %= active; return A` to the reuseport group.
fn steer(socket: &Socket, active: u32) -> io::Result<()> {
    let code = [
        // BPF_LD | BPF_W | BPF_ABS: A = skb->hash
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: (libc::SKF_AD_OFF + SKF_AD_RXHASH) as u32,
        },
        // BPF_ALU | BPF_MOD | BPF_K: A %= active
        libc::sock_filter {
            code: 0x94,
            jt: 0,
            jf: 0,
            k: active,
        },
        // BPF_RET | BPF_A: the index of the socket in the group
        libc::sock_filter {
            code: 0x16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let program = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_ptr().cast_mut(),
    };
    // SAFETY: `program` points at `code`, which outlives the call; the
    // kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const program).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The current accept-queue length of a listening socket (TCP_INFO's
/// `tcpi_unacked` holds it for listeners).
fn accept_queue(socket: &Socket) -> io::Result<u32> {
    // SAFETY: tcp_info is plain data; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes of that size.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(info.tcpi_unacked)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// The kernel spreads connections over the slots, never to a slot
    /// steered away from, and queued connections are counted.
    #[test]
    fn steering_spreads_and_excludes_and_queues_are_visible() {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let mut sockets = SlotSockets::bind(port).unwrap();
        for slot in 0..3 {
            sockets.socket(slot).unwrap();
        }
        sockets.route(2, 3).unwrap();
        let clients: Vec<TcpStream> = (0..60)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let queued: Vec<u32> = (0..3).map(|s| sockets.queued(s)).collect();
        assert_eq!(queued.iter().sum::<u32>(), 60, "{queued:?}");
        assert_eq!(queued[2], 0, "slot 2 was steered away: {queued:?}");
        assert!(queued[0] >= 15 && queued[1] >= 15, "spread: {queued:?}");
        // Accept them all from slot 0 and 1 sockets to see they are real.
        let mut by_slot = HashMap::new();
        for slot in 0..2u32 {
            let listener: TcpListener = sockets.sockets[slot as usize].try_clone().unwrap().into();
            for _ in 0..queued[slot as usize] {
                let (mut s, _) = listener.accept().unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_millis(1)))
                    .unwrap();
                let _ = s.read(&mut [0u8; 1]);
                *by_slot.entry(slot).or_insert(0) += 1;
            }
        }
        assert_eq!(by_slot.values().sum::<i32>(), 60);
        drop(clients);
        sockets.route(2, 2).unwrap();
        assert_eq!(sockets.sockets.len(), 2);
    }

    /// A port someone else listens on, even with SO_REUSEPORT as ours
    /// would, is refused rather than shared.
    #[test]
    fn a_port_another_process_listens_on_is_refused() {
        let theirs = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        theirs.set_reuse_port(true).unwrap();
        theirs
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        theirs.listen(1).unwrap();
        let port = theirs.local_addr().unwrap().as_socket().unwrap().port();
        let err = SlotSockets::bind(port).err().expect("refused");
        assert_eq!(
            err.to_string(),
            format!("port {port} is already in use by another process")
        );
        drop(theirs);
        SlotSockets::bind(port).expect("free again");
    }
}
