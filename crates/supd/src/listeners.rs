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
//! program on the group (`SO_ATTACH_REUSEPORT_CBPF`) that maps the flow hash
//! onto a set of slots: `hash % n`, then the n-th slot of the set. Sockets
//! are indexed in the order they joined, i.e. by slot, so a socket is never
//! listened again (that would move it to the end of the group). Scaling down
//! first steers connections away from the slots being removed, lets their
//! queues drain, and only then closes them, so no queued connection is reset;
//! slots nobody serves are steered away from too (see [`crate::unserved`]).
//!
//! A slot nobody will serve (errored, stopped) still has its socket, and its
//! queue would hold clients until their own timeout: the daemon, then the
//! only holder, accepts them and closes each with a reset
//! ([`SlotSockets::reset_queued`]).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

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

    /// Steers new connections to `slots`: not empty, each with a socket.
    pub fn steer(&self, slots: &[u32]) -> io::Result<()> {
        if slots.is_empty() || slots.iter().any(|&s| s >= self.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot steer to slots {slots:?} of {}", self.len()),
            ));
        }
        attach(&self.sockets[0], &program(slots))
    }

    /// How many slots have a socket.
    pub fn len(&self) -> u32 {
        self.sockets.len() as u32
    }

    /// Closes the sockets of slots at or above `keep` (at least one stays),
    /// which must have no worker left and no connection steered to them.
    pub fn close_from(&mut self, keep: u32) {
        self.sockets.truncate(keep.max(1) as usize);
    }

    /// Connections waiting in the accept queue of `slot` (0 if it has no socket).
    pub fn queued(&self, slot: u32) -> u32 {
        self.sockets
            .get(slot as usize)
            .map_or(0, |s| accept_queue(s).unwrap_or(0))
    }

    /// Accepts the connections waiting in the queue of `slot` now (not
    /// those that arrive meanwhile, such as the reset clients coming back:
    /// they get a look of their own) and closes each with a reset
    /// (SO_LINGER 0), so their clients fail at once instead of waiting for
    /// a worker that will not come; how many.
    ///
    /// The socket is made non-blocking meanwhile (a flag shared with every
    /// holder), so the daemon never waits here even if someone else took
    /// the connections first; it is left as it was found.
    pub fn reset_queued(&self, slot: u32) -> io::Result<u32> {
        let Some(socket) = self.sockets.get(slot as usize) else {
            return Ok(0);
        };
        let queued = accept_queue(socket)?;
        let was_blocking = !socket.nonblocking()?;
        if was_blocking {
            socket.set_nonblocking(true)?;
        }
        let reset = reset_first(socket, queued);
        if was_blocking {
            socket.set_nonblocking(false)?;
        }
        reset
    }
}

/// Accepts and resets the first `count` connections `socket` (non-blocking)
/// has queued, or fewer if someone else took some.
fn reset_first(socket: &Socket, count: u32) -> io::Result<u32> {
    let mut reset = 0;
    for _ in 0..count {
        match socket.accept() {
            Ok((connection, _)) => {
                // Dropped right away: the kernel answers the client with RST.
                connection.set_linger(Some(Duration::ZERO))?;
                reset += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // Aborted by its client before we got to it, or a signal.
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.raw_os_error() == Some(libc::ECONNABORTED) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(reset)
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

/// The steering program for `slots` (not empty): `A = flow hash % n`, then
/// the A-th slot of the set. When the set is `0..n` that is A itself (the
/// three instructions of a plain `hash % n`); otherwise a chain of
/// `if A == i return slots[i]`: 2n + 1 instructions, within the kernel's
/// 4096 for the 1024 slots an app may have.
fn program(slots: &[u32]) -> Vec<libc::sock_filter> {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // BPF_LD | BPF_W | BPF_ABS: A = skb->hash
    let mut code = vec![op(0x20, 0, 0, (libc::SKF_AD_OFF + SKF_AD_RXHASH) as u32)];
    // BPF_ALU | BPF_MOD | BPF_K: A %= n
    code.push(op(0x94, 0, 0, slots.len() as u32));
    let contiguous = slots.iter().zip(0..).all(|(&slot, i)| slot == i);
    if contiguous {
        // BPF_RET | BPF_A: the socket at index A
        code.push(op(0x16, 0, 0, 0));
        return code;
    }
    let (last, others) = slots.split_last().expect("a slot to steer to");
    for (i, &slot) in (0..).zip(others) {
        // BPF_JMP | BPF_JEQ | BPF_K: if A == i, the next instruction, else skip it
        code.push(op(0x15, 0, 1, i));
        // BPF_RET | BPF_K
        code.push(op(0x06, 0, 0, slot));
    }
    code.push(op(0x06, 0, 0, *last));
    code
}

/// Attaches `code` to the reuseport group of `socket`.
fn attach(socket: &Socket, code: &[libc::sock_filter]) -> io::Result<()> {
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

    /// A port that was free a moment ago.
    fn free_port() -> u16 {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    }

    /// The sockets of `n` slots on a free port.
    fn slots(n: u32) -> SlotSockets {
        let mut sockets = SlotSockets::bind(free_port()).unwrap();
        for slot in 0..n {
            sockets.socket(slot).unwrap();
        }
        sockets
    }

    /// `count` clients connected to `sockets`' port.
    fn connect(sockets: &SlotSockets, count: usize) -> Vec<TcpStream> {
        (0..count)
            .map(|_| TcpStream::connect(("127.0.0.1", sockets.port())).unwrap())
            .collect()
    }

    /// Runs a steering program the way the kernel does, on one flow hash.
    fn run(code: &[libc::sock_filter], hash: u32) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = code[pc];
            pc += 1;
            match i.code {
                0x20 => a = hash,
                0x94 => a %= i.k,
                0x15 if a == i.k => pc += usize::from(i.jt),
                0x15 => pc += usize::from(i.jf),
                0x16 => return a,
                0x06 => return i.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    /// Each set of slots gets every hash mapped into it, evenly, and a set
    /// `0..n` is the plain `hash % n` of three instructions.
    #[test]
    fn programs_map_every_hash_onto_the_set() {
        let cases: &[(&[u32], usize)] = &[
            (&[0], 3),
            (&[0, 1, 2], 3),
            (&[1], 3),
            (&[0, 2], 5),
            (&[3, 1], 5),
            (&[2, 5, 7], 7),
        ];
        for &(set, length) in cases {
            let code = program(set);
            assert_eq!(code.len(), length, "{set:?}");
            let mut hits = vec![0; 8];
            for hash in 0..6000u32 {
                hits[run(&code, hash) as usize] += 1;
            }
            for (slot, &n) in hits.iter().enumerate() {
                match set.contains(&(slot as u32)) {
                    true => assert_eq!(n, 6000 / set.len(), "{set:?}: {hits:?}"),
                    false => assert_eq!(n, 0, "{set:?}: {hits:?}"),
                }
            }
        }
        let all: Vec<u32> = (0..1024).collect();
        assert_eq!(program(&all).len(), 3);
        let most: Vec<u32> = (1..1024).collect();
        assert!(program(&most).len() <= 4096);
        assert_eq!(run(&program(&most), 1022), 1023);
    }

    /// The kernel spreads connections over the slots, never to a slot
    /// steered away from, and queued connections are counted.
    #[test]
    fn steering_spreads_and_excludes_and_queues_are_visible() {
        let mut sockets = slots(3);
        sockets.steer(&[0, 1]).unwrap();
        let clients = connect(&sockets, 60);
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
        sockets.close_from(2);
        assert_eq!(sockets.len(), 2);
        assert!(sockets.steer(&[2]).is_err(), "slot 2 has no socket now");
    }

    /// A set with a hole in it: the slot in the middle gets nothing.
    #[test]
    fn steering_skips_a_slot_in_the_middle() {
        let sockets = slots(3);
        sockets.steer(&[0, 2]).unwrap();
        let _clients = connect(&sockets, 60);
        let queued: Vec<u32> = (0..3).map(|s| sockets.queued(s)).collect();
        assert_eq!(queued[1], 0, "slot 1 was steered away: {queued:?}");
        assert!(queued[0] >= 15 && queued[2] >= 15, "spread: {queued:?}");
    }

    /// Queued clients of a slot are reset (not left waiting), the others
    /// untouched, and the socket is left blocking as it was.
    #[test]
    fn queued_connections_are_reset() {
        let sockets = slots(2);
        sockets.steer(&[1]).unwrap();
        let mut clients = connect(&sockets, 5);
        assert_eq!(sockets.reset_queued(0).unwrap(), 0);
        assert_eq!(sockets.reset_queued(1).unwrap(), 5);
        assert_eq!(sockets.queued(1), 0);
        assert!(!sockets.sockets[1].nonblocking().unwrap());
        for client in &mut clients {
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let err = client.read(&mut [0u8; 1]).expect_err("reset");
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        }
        // One an instance made non-blocking (as Node does) stays so.
        sockets.sockets[1].set_nonblocking(true).unwrap();
        let _more = connect(&sockets, 2);
        assert_eq!(sockets.reset_queued(1).unwrap(), 2);
        assert!(sockets.sockets[1].nonblocking().unwrap());
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
