//! What a daemon hands to its next image when it re-executes itself
//! (`supctl update`): every app's config and instance records, and the
//! descriptors that keep the apps running untouched — the control socket,
//! the home lock, the listening sockets, each process's log pipes (with the
//! start of a line not yet complete), notify socket and IPC channel.
//!
//! The descriptors cross `execve` by number: [`Handover::pass`] clears their
//! close-on-exec flag just before the exec, and the next image takes them
//! over with [`take`]. The rest travels as JSON in `SUPD_HOME/handover.json`
//! (0600), read once and removed.

use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use supd_config::{AppConfig, DaemonConfig};
use supd_proto::Home;

use crate::instance::Instance;
use crate::logs::FrozenPipe;

/// The format's version: an image refuses a handover it does not know.
pub const VERSION: u32 = 1;

/// Everything the next image needs.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// [`VERSION`] of the image that wrote it.
    pub version: u32,
    /// The supd version of the image that wrote it.
    pub from_version: String,
    /// The control socket, still listening (clients wait in its backlog).
    pub control: RawFd,
    /// The open file that holds the home's lock.
    pub lock: RawFd,
    /// The latest `[daemon]` settings.
    pub daemon: DaemonConfig,
    /// The sampling interval in force.
    pub sample_interval_ms: u64,
    /// Where metrics were served, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// The descriptor limit (soft, hard) the daemon was started with, which
    /// children get back; the next image starts with the raised one.
    pub open_files: Option<(u64, u64)>,
    /// The apps, in start order.
    pub apps: Vec<FrozenApp>,
}

/// One app, between two images.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenApp {
    /// Its config.
    pub config: AppConfig,
    /// The environment of the `supctl start` that started it.
    pub base_env: BTreeMap<String, String>,
    /// Its instance records, as `list` showed them.
    pub instances: Vec<Instance>,
    /// The generation the next process gets.
    pub next_generation: u64,
    /// The listening socket of each slot, for an app with a port.
    pub sockets: Vec<RawFd>,
    /// The channels of each running process.
    pub processes: Vec<FrozenProcess>,
    /// The log pipe of each running process's stdout and stderr.
    pub pipes: Vec<FrozenPipe>,
}

/// The channels of one running process.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenProcess {
    /// The process, by generation.
    pub generation: u64,
    /// Its notify socket (bound to `notify_address`).
    pub notify: RawFd,
    /// The `NOTIFY_SOCKET` the process was given.
    pub notify_address: String,
    /// Our end of its Node IPC channel, if it has one.
    pub ipc: Option<RawFd>,
}

impl Handover {
    /// `SUPD_HOME/handover.json`.
    pub fn path(home: &Home) -> PathBuf {
        home.dir().join("handover.json")
    }

    /// Every descriptor named in the handover.
    fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.control, self.lock];
        for app in &self.apps {
            fds.extend(&app.sockets);
            fds.extend(app.pipes.iter().map(|p| p.fd));
            for process in &app.processes {
                fds.push(process.notify);
                fds.extend(process.ipc);
            }
        }
        fds
    }

    /// Lets the descriptors cross `execve` (`true`), or closes them on exec
    /// again (`false`, when the exec failed).
    pub fn pass(&self, across_exec: bool) -> std::io::Result<()> {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        let flags = if across_exec {
            FdFlag::empty()
        } else {
            FdFlag::FD_CLOEXEC
        };
        for fd in self.fds() {
            // SAFETY: every descriptor of the handover is open and owned by
            // a part of this daemon for as long as the handover is used.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            fcntl(fd, FcntlArg::F_SETFD(flags))?;
        }
        Ok(())
    }
}

/// Takes ownership of a descriptor received across `execve`.
///
/// # Safety
/// `fd` must be a descriptor of the handover this image received, taken
/// only once.
pub unsafe fn take(fd: RawFd) -> OwnedFd {
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
