//! Taking the listening sockets of a dead daemon's apps from the instances
//! that still hold them, so their ports never close during a takeover.
//!
//! Each instance got its slot's socket as fd 3 (see [`crate::listeners`]).
//! The kernel resets the queued connections of a socket when its last holder
//! closes it, and refuses new ones while nothing listens: so before the old
//! instances are stopped, the next daemon copies each slot's socket out of a
//! live old instance of that slot (`pidfd_getfd`, Linux 5.6, same uid or
//! root) and its app is restored on it, as an in-place `update` hands its
//! sockets over. Only the slots 0..n that all yield a socket are taken, so
//! a socket's index in the reuseport group stays its slot (the BPF steering
//! relies on it); the app binds the others as usual.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::Socket;
use supd_supervisor::procfs;

use crate::dump::SavedApp;
use crate::listeners;
use crate::state::Recorded;

/// The descriptor an instance holds its slot's socket on.
const SLOT_FD: i32 = 3;

/// The sockets taken for each app with a port, by app name, in slot order.
pub fn take(apps: &[SavedApp], recorded: &[Recorded]) -> HashMap<String, Vec<OwnedFd>> {
    let mut taken = HashMap::new();
    for saved in apps.iter().filter(|a| !a.stopped) {
        let config = &saved.config;
        let Some(port) = config.port else { continue };
        let mut sockets = Vec::new();
        for slot in 0..config.instances {
            let holder = recorded
                .iter()
                .find(|r| r.app == config.name && r.slot == slot);
            let result = match holder {
                Some(r) => take_one(r, config.host, port),
                None => Err(io::Error::other("no process of it is recorded")),
            };
            match result {
                Ok(socket) => sockets.push(socket),
                Err(e) => {
                    tracing::info!(
                        app = %config.name,
                        slot,
                        "cannot keep its listening socket ({e}): the slots from here on are bound anew"
                    );
                    break;
                }
            }
        }
        if !sockets.is_empty() {
            tracing::info!(app = %config.name, port, slots = sockets.len(), "kept the listening sockets of the previous supd");
            taken.insert(config.name.clone(), sockets);
        }
    }
    taken
}

/// Copies fd 3 of the recorded process, if it is still that process and the
/// descriptor is the slot's socket: listening TCP on `port`, where the app's
/// `host` says.
fn take_one(recorded: &Recorded, host: Option<IpAddr>, port: u16) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // (or -1), owned here from now on.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, recorded.pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor pidfd_open just returned, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd names the process that had the pid when it was opened: if
    // that still has the recorded start time, it is the recorded instance.
    let same = procfs::stat(recorded.pid)
        .is_some_and(|s| s.start_time == recorded.start_time && !s.exited);
    if !same {
        return Err(io::Error::other("its process has exited"));
    }
    // SAFETY: pidfd_getfd with a valid pidfd, a descriptor number and no
    // flags returns a new descriptor (or -1), owned here from now on.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), SLOT_FD, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor pidfd_getfd just returned, owned by nobody else.
    let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    check(&socket, host, port)?;
    Ok(socket.into())
}

/// Whether `socket` is one the daemon would have bound for `port` on `host`.
fn check(socket: &Socket, host: Option<IpAddr>, port: u16) -> io::Result<()> {
    let address = socket.local_addr()?.as_socket();
    let wanted = address.is_some_and(|a| a.port() == port && listeners::listens_for(host, a.ip()));
    if !wanted || !socket.is_listener()? {
        let at = host.map_or_else(|| "every interface".to_owned(), |h| h.to_string());
        return Err(io::Error::other(format!(
            "its fd 3 is not a socket listening on port {port} on {at}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Type};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    fn socket(address: SocketAddr, listen: bool) -> Socket {
        let s = Socket::new(Domain::for_address(address), Type::STREAM, None).unwrap();
        s.bind(&address.into()).unwrap();
        if listen {
            s.listen(1).unwrap();
        }
        s
    }

    fn port(socket: &Socket) -> u16 {
        socket.local_addr().unwrap().as_socket().unwrap().port()
    }

    /// Only a listening socket on the app's address and port is kept.
    #[test]
    fn only_the_apps_listening_socket_passes() {
        let local4 = Some(Ipv4Addr::LOCALHOST.into());
        let ours = socket((Ipv4Addr::UNSPECIFIED, 0).into(), true);
        check(&ours, None, port(&ours)).unwrap();
        let err = check(&ours, None, port(&ours).wrapping_add(1)).unwrap_err();
        assert!(err.to_string().ends_with("on every interface"), "{err}");
        assert!(check(&ours, local4, port(&ours)).is_err(), "another host");
        let dual = socket((Ipv6Addr::UNSPECIFIED, 0).into(), true);
        check(&dual, None, port(&dual)).unwrap();
        let local = socket((Ipv4Addr::LOCALHOST, 0).into(), true);
        check(&local, local4, port(&local)).unwrap();
        let err = check(&local, None, port(&local)).unwrap_err();
        assert!(err.to_string().contains("every interface"), "{err}");
        let err = check(&ours, local4, port(&ours)).unwrap_err();
        assert!(err.to_string().ends_with("on 127.0.0.1"), "{err}");
        let idle = socket((Ipv4Addr::UNSPECIFIED, 0).into(), false);
        assert!(check(&idle, None, port(&idle)).is_err(), "not listening");
    }
}
