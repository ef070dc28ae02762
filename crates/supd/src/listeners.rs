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
//!
//! Where they listen is the app's `host`; without one, on every interface:
//! dual-stack `::` (IPv6 and, through mapped addresses, IPv4), or `0.0.0.0`
//! where the kernel has no IPv6. Every socket of a group is bound to the same
//! address, or it would not join the group.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// The backlog: connections the kernel queues per slot while no worker accepts.
const BACKLOG: i32 = 4096;
/// `SKF_AD_RXHASH`: the ancillary load of the packet's flow hash.
const SKF_AD_RXHASH: i32 = 32;

/// The sockets of one app's port, indexed by slot.
pub struct SlotSockets {
    /// Where every slot's socket is bound: the host (or `::`, `0.0.0.0`)
    /// and the port.
    address: SocketAddr,
    sockets: Vec<Socket>,
}

impl SlotSockets {
    /// Binds the socket of slot 0 on `host` (every interface when `None`),
    /// proving the port is ours to use.
    ///
    /// SO_REUSEPORT would let us join a group another process (another
    /// supd's app, say) already listens in, and the kernel would then split
    /// that port's connections between two unrelated services. So a probe
    /// bind without it comes first, on the same address: it fails while
    /// anyone listens there.
    pub fn bind(host: Option<IpAddr>, port: u16) -> io::Result<SlotSockets> {
        first_available(&candidates(host), |ip| {
            let address = SocketAddr::new(ip, port);
            probe(address)?;
            SlotSockets::first(address)
        })
    }

    /// The same port on another `host`, for an app whose `host` changed: no
    /// probe, which would only find the app's own sockets (its running
    /// instances keep the old ones until they are replaced).
    pub fn moved(&self, host: Option<IpAddr>) -> io::Result<SlotSockets> {
        let port = self.port();
        first_available(&candidates(host), |ip| {
            SlotSockets::first(SocketAddr::new(ip, port))
        })
    }

    /// The sockets of an app handed over by the daemon's previous image, or
    /// taken from a dead daemon's instances. They say where they listen
    /// (an older daemon bound `0.0.0.0`), and the slots bound later join
    /// them there; `host` only serves when they cannot say.
    pub fn adopt(host: Option<IpAddr>, port: u16, sockets: Vec<OwnedFd>) -> SlotSockets {
        let sockets: Vec<Socket> = sockets.into_iter().map(Socket::from).collect();
        let address = sockets
            .first()
            .and_then(|s| s.local_addr().ok()?.as_socket())
            .unwrap_or_else(|| SocketAddr::new(candidates(host)[0], port));
        SlotSockets { address, sockets }
    }

    /// The listening socket of slot 0 on `address`.
    fn first(address: SocketAddr) -> io::Result<SlotSockets> {
        let mut sockets = SlotSockets {
            address,
            sockets: Vec::new(),
        };
        sockets.ensure(1)?;
        Ok(sockets)
    }

    /// Each slot's socket, to hand over.
    pub fn fds(&self) -> Vec<RawFd> {
        self.sockets.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The address the port listens on (`::` or `0.0.0.0` for every interface).
    pub fn host(&self) -> IpAddr {
        self.address.ip()
    }

    /// The socket of `slot`, binding it (and any below it) first if needed.
    pub fn socket(&mut self, slot: u32) -> io::Result<BorrowedFd<'_>> {
        self.ensure(slot as usize + 1)?;
        Ok(self.sockets[slot as usize].as_fd())
    }

    fn ensure(&mut self, count: usize) -> io::Result<()> {
        while self.sockets.len() < count {
            self.sockets.push(bind_one(self.address)?);
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

/// Where to try to listen, in order: `host`, or every interface: `::`,
/// then `0.0.0.0` for a kernel without IPv6.
fn candidates(host: Option<IpAddr>) -> Vec<IpAddr> {
    match host {
        Some(ip) => vec![ip],
        None => vec![Ipv6Addr::UNSPECIFIED.into(), Ipv4Addr::UNSPECIFIED.into()],
    }
}

/// `attempt` on each address in turn, until one works or fails for
/// another reason than a missing IPv6: that error is the answer (a port
/// in use on `::` is in use, not a reason to try `0.0.0.0`).
fn first_available<T>(
    addresses: &[IpAddr],
    mut attempt: impl FnMut(IpAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut unavailable = io::Error::from_raw_os_error(libc::EAFNOSUPPORT);
    for &ip in addresses {
        match attempt(ip) {
            Err(e) if no_ipv6(&e) => unavailable = e,
            done => return done,
        }
    }
    Err(unavailable)
}

/// Whether `e` says the address family (IPv6) is missing: no IPv6 in the
/// kernel (EAFNOSUPPORT at `socket`), or no such address here
/// (EADDRNOTAVAIL at `bind`).
fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

/// A TCP socket for `address`, SO_REUSEADDR set (a port left in TIME_WAIT
/// by a previous run is still ours); an IPv6 one also takes IPv4 (mapped
/// addresses), whatever `net.ipv6.bindv6only` says, so `::` is dual-stack.
fn socket_for(address: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    if address.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// Fails with "port P is already in use by another process" when a socket
/// listens on `address`'s port where it would take connections meant for
/// `address` (SO_REUSEADDR only, without SO_REUSEPORT).
fn probe(address: SocketAddr) -> io::Result<()> {
    match socket_for(address)?.bind(&address.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "port {} is already in use by another process",
                address.port()
            ),
        )),
        other => other,
    }
}

fn bind_one(address: SocketAddr) -> io::Result<Socket> {
    let socket = socket_for(address)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

/// Whether a socket bound to `bound` listens where an app with `host`
/// wants: on `host`, or without one on every interface (`::`, or the
/// `0.0.0.0` of a kernel without IPv6 or of an older supd).
pub fn listens_for(host: Option<IpAddr>, bound: IpAddr) -> bool {
    match host {
        Some(host) => bound == host,
        None => bound.is_unspecified(),
    }
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
        let mut sockets = SlotSockets::bind(None, free_port()).unwrap();
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

    fn os_error(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    /// Without IPv6, every interface is `0.0.0.0`; any other failure is
    /// the answer, and a host is tried alone.
    #[test]
    fn every_interface_falls_back_to_ipv4_only_without_ipv6() {
        let v6: IpAddr = Ipv6Addr::UNSPECIFIED.into();
        let v4: IpAddr = Ipv4Addr::UNSPECIFIED.into();
        let loopback6: IpAddr = Ipv6Addr::LOCALHOST.into();
        /// The host, the error IPv6 addresses fail with, what is bound or the error.
        type Case = (Option<IpAddr>, Option<i32>, Result<IpAddr, i32>);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (None, None, Ok(v6)),
            (None, Some(libc::EAFNOSUPPORT), Ok(v4)),
            (None, Some(libc::EADDRNOTAVAIL), Ok(v4)),
            (None, Some(libc::EADDRINUSE), Err(libc::EADDRINUSE)),
            (None, Some(libc::EACCES), Err(libc::EACCES)),
            (Some(loopback6), None, Ok(loopback6)),
            (Some(loopback6), Some(libc::EADDRNOTAVAIL), Err(libc::EADDRNOTAVAIL)),
            (Some(loopback6), Some(libc::EAFNOSUPPORT), Err(libc::EAFNOSUPPORT)),
        ];
        for &(host, v6_error, want) in cases {
            let mut tried = Vec::new();
            let got = first_available(&candidates(host), |ip| {
                tried.push(ip);
                match v6_error {
                    Some(code) if ip.is_ipv6() => Err(os_error(code)),
                    _ => Ok(ip),
                }
            });
            let got = got.map_err(|e| e.raw_os_error().unwrap());
            assert_eq!(got, want, "{host:?} {v6_error:?}, tried {tried:?}");
        }
    }

    /// A socket taken over serves an app when it listens where the app's
    /// host says; without a host, on every interface of either family.
    #[test]
    fn a_socket_listens_for_its_host() {
        let any6: IpAddr = Ipv6Addr::UNSPECIFIED.into();
        let any4: IpAddr = Ipv4Addr::UNSPECIFIED.into();
        let local4: IpAddr = Ipv4Addr::LOCALHOST.into();
        let local6: IpAddr = Ipv6Addr::LOCALHOST.into();
        #[rustfmt::skip]
        let cases = [
            (None, any6, true), (None, any4, true), (None, local4, false),
            (Some(local4), local4, true), (Some(local4), any4, false), (Some(local4), local6, false),
            (Some(local6), local6, true), (Some(any4), any4, true), (Some(any4), any6, false),
        ];
        for (host, bound, want) in cases {
            assert_eq!(listens_for(host, bound), want, "{host:?} {bound}");
        }
    }

    /// Whether something accepts TCP connections at `ip`:`port`.
    fn answers(ip: IpAddr, port: u16) -> bool {
        TcpStream::connect((ip, port)).is_ok()
    }

    /// Every interface is dual-stack; a host is that address only; a new
    /// host on the same port binds beside the sockets instances still hold.
    #[test]
    fn sockets_listen_on_the_host() {
        let local4: IpAddr = Ipv4Addr::LOCALHOST.into();
        let local6: IpAddr = Ipv6Addr::LOCALHOST.into();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let everywhere = SlotSockets::bind(None, port).unwrap();
        assert_eq!(everywhere.host(), IpAddr::from(Ipv6Addr::UNSPECIFIED));
        assert!(answers(local4, port) && answers(local6, port));

        let loopback = everywhere.moved(Some(local4)).unwrap();
        drop(everywhere);
        assert_eq!(loopback.host(), local4);
        assert!(answers(local4, port) && !answers(local6, port));

        let mut six = loopback.moved(Some(local6)).unwrap();
        drop(loopback);
        six.socket(1).unwrap();
        assert_eq!(six.host(), local6);
        assert!(!answers(local4, port) && answers(local6, port));
    }

    /// Sockets handed over keep their address, and later slots join them
    /// there (an older supd bound `0.0.0.0`).
    #[test]
    fn adopted_sockets_say_where_they_listen() {
        let old = bind_one(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).unwrap();
        let address = old.local_addr().unwrap().as_socket().unwrap();
        let mut adopted = SlotSockets::adopt(None, address.port(), vec![old.into()]);
        assert_eq!(adopted.host(), IpAddr::from(Ipv4Addr::UNSPECIFIED));
        adopted.socket(1).unwrap();
        let second = adopted.sockets[1].local_addr().unwrap().as_socket();
        assert_eq!(second, Some(address));
    }

    /// A port someone else listens on, even with SO_REUSEPORT as ours
    /// would, is refused rather than shared, on every interface or on the
    /// host.
    #[test]
    fn a_port_another_process_listens_on_is_refused() {
        let theirs = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        theirs.set_reuse_port(true).unwrap();
        theirs
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        theirs.listen(1).unwrap();
        let port = theirs.local_addr().unwrap().as_socket().unwrap().port();
        for host in [None, Some(Ipv4Addr::LOCALHOST.into())] {
            let err = SlotSockets::bind(host, port).err().expect("refused");
            assert_eq!(
                err.to_string(),
                format!("port {port} is already in use by another process"),
                "{host:?}"
            );
        }
        drop(theirs);
        SlotSockets::bind(None, port).expect("free again");
    }
}
