//! Claiming `SUPD_HOME`: the folder (0700), the lock that makes this the only
//! daemon for it, the socket (0600) and the pid file.

use std::fs::{self, File, OpenOptions};
use std::os::fd::RawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{Mode, umask};
use supd_proto::Home;
use tokio::net::UnixListener;

/// Creates the home folder (0700) and takes its lock; the lock is held for
/// as long as the returned value lives.
pub fn claim(home: &Home) -> anyhow::Result<Flock<File>> {
    let dir = home.dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set permissions of {}", dir.display()))?;
    let path = home.lock_file();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            bail!("another supd is already running for {}", dir.display())
        }
        Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Takes the lock back from the open file the previous image held it on
/// (`update`): relocking the same open file cannot conflict.
pub fn reclaim(lock: RawFd) -> anyhow::Result<Flock<File>> {
    // SAFETY: the lock's descriptor in the handover, taken once.
    let file = File::from(unsafe { crate::handover::take(lock) });
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .context("cannot take the home's lock over")
}

/// The control socket the previous image was listening on (`update`).
pub fn adopt_socket(fd: RawFd) -> anyhow::Result<UnixListener> {
    // SAFETY: the control socket's descriptor in the handover, taken once.
    let listener = std::os::unix::net::UnixListener::from(unsafe { crate::handover::take(fd) });
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener).context("cannot take the control socket over")
}

/// Binds `supd.sock` with mode 0600 (set through the umask, so there is no
/// moment when it is more open). A stale socket is removed first: holding the
/// lock proves no other daemon uses it.
pub fn bind_socket(home: &Home) -> anyhow::Result<UnixListener> {
    let path = home.socket();
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(&path);
    umask(old);
    bound.with_context(|| format!("cannot bind {}", path.display()))
}

/// Writes `supd.pid`.
pub fn write_pid(home: &Home) -> anyhow::Result<()> {
    let path = home.pid_file();
    fs::write(&path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Removes the socket and the pid file on the way out.
pub fn remove_runtime_files(home: &Home) {
    let _ = fs::remove_file(home.socket());
    let _ = fs::remove_file(home.pid_file());
}
