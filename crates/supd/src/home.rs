//! Claiming `SUPD_HOME`: a home we own, or nothing. The folder (0700) and
//! each folder the daemon makes in it must be ours and writable by nobody
//! else, or the daemon refuses to start: whoever can write there could plant
//! a symbolic link that makes a root daemon append to, or truncate, a file
//! anywhere, read the state file (every app's environment) or replace the
//! Node preload. Files in it are opened without following symbolic links
//! ([`supd_proto::home::open_no_symlink`]), and files written whole are
//! written through a fresh temporary file ([`write_atomically`]).
//!
//! Also here: the lock that makes this the only daemon for the home, the
//! socket (0600) and the pid file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{Mode, umask};
use supd_proto::Home;
use supd_proto::home::open_no_symlink;
use tokio::net::UnixListener;

/// Why a folder of the home cannot be trusted.
#[derive(Debug, PartialEq, Eq)]
pub enum Untrusted {
    /// A symbolic link where a folder of the daemon's should be.
    Symlink,
    /// Something else than a folder.
    NotAFolder,
    /// Owned by this uid, not by the daemon's.
    Owner(u32),
    /// Writable by group or others: these mode bits.
    OpenToOthers(u32),
}

/// What `lstat` (or `stat`, for a home that is a symbolic link) says of a folder.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// It is a symbolic link.
    pub symlink: bool,
    /// It is a folder.
    pub folder: bool,
    /// Its owner's uid.
    pub owner: u32,
    /// Its mode bits.
    pub mode: u32,
}

impl Seen {
    fn of(meta: &fs::Metadata) -> Seen {
        Seen {
            symlink: meta.file_type().is_symlink(),
            folder: meta.is_dir(),
            owner: meta.uid(),
            mode: meta.mode() & 0o7777,
        }
    }
}

/// Whether a daemon running as `uid` may keep its files in a folder it
/// sees as `seen`. Root is trusted no more than anyone: a home root does
/// not own is refused too.
pub fn judge(seen: Seen, uid: u32) -> Result<(), Untrusted> {
    if seen.symlink {
        Err(Untrusted::Symlink)
    } else if !seen.folder {
        Err(Untrusted::NotAFolder)
    } else if seen.owner != uid {
        Err(Untrusted::Owner(seen.owner))
    } else if seen.mode & 0o022 != 0 {
        Err(Untrusted::OpenToOthers(seen.mode))
    } else {
        Ok(())
    }
}

impl Untrusted {
    /// The one line a user reads: the path, what is wrong, the fix.
    pub fn explain(&self, path: &Path, uid: u32) -> String {
        let p = path.display();
        let other = "or choose another SUPD_HOME";
        match self {
            Untrusted::Symlink => {
                format!(
                    "{p} is a symbolic link: supd keeps its files only in a folder it owns; remove it, {other}"
                )
            }
            Untrusted::NotAFolder => format!("{p} is not a folder: remove it, {other}"),
            Untrusted::Owner(owner) => format!(
                "{p} is owned by uid {owner}, not by supd's uid {uid}: anyone who owns it could redirect supd's files; chown {uid} {p}, {other}"
            ),
            Untrusted::OpenToOthers(mode) => format!(
                "{p} is writable by group or others (mode {mode:o}): anyone could plant files in it; chmod 700 {p}, {other}"
            ),
        }
    }
}

/// The daemon's uid.
fn uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// `done`, where an error of kind `fine` (things already as wanted) is a
/// success; another error says what could not be done to `path`.
fn already(done: io::Result<()>, fine: io::ErrorKind, what: &str, path: &Path) -> io::Result<()> {
    match done {
        Err(e) if e.kind() != fine => Err(io::Error::new(
            e.kind(),
            format!("cannot {what} {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// Makes `path` (0700) if it is missing and checks that it is a folder of
/// ours that nobody else can write to, without following a symbolic link.
pub fn ensure_folder(path: &Path) -> io::Result<()> {
    let made = fs::DirBuilder::new().mode(0o700).create(path);
    already(made, io::ErrorKind::AlreadyExists, "create", path)?;
    let seen = Seen::of(&fs::symlink_metadata(path)?);
    judge(seen, uid())
        .map_err(|u| io::Error::new(io::ErrorKind::PermissionDenied, u.explain(path, uid())))
}

/// Checks the home folder itself, creating it (0700) if it is missing. A
/// folder of ours that others can read (but not write) is closed to 0700.
/// A home that is a symbolic link (`~/.supd -> /data/supd`) is accepted
/// only if its target passes the same checks, and is never chmod'ed: a
/// chmod would go through the link to a folder the user chose.
fn check_home(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let linked = meta.file_type().is_symlink();
    let meta = if linked { fs::metadata(dir)? } else { meta };
    let seen = Seen::of(&meta);
    judge(seen, uid()).map_err(|u| anyhow::anyhow!(u.explain(dir, uid())))?;
    if linked {
        if seen.mode & 0o077 != 0 {
            tracing::warn!(home = %dir.display(), "SUPD_HOME is a symbolic link to a folder others can read (mode {:o}); it is left as it is", seen.mode);
        }
    } else if seen.mode & 0o077 != 0 {
        // Through a descriptor of the folder itself, never a path that
        // could have become a link since.
        let folder = open_no_symlink(dir, OpenOptions::new().read(true), libc::O_DIRECTORY)?;
        nix::sys::stat::fchmod(&folder, Mode::from_bits_truncate(0o700))
            .with_context(|| format!("cannot set permissions of {}", dir.display()))?;
    }
    Ok(())
}

/// Checks the home and every folder the daemon keeps in it (creating what
/// is missing), then takes the home's lock; the lock is held for as long
/// as the returned value lives.
pub fn claim(home: &Home) -> anyhow::Result<Flock<File>> {
    let dir = home.dir();
    check_home(dir)?;
    for folder in folders(home) {
        ensure_folder(&folder)?;
    }
    let path = home.lock_file();
    let file = open_no_symlink(
        &path,
        OpenOptions::new().create(true).truncate(false).write(true),
        0,
    )
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
pub fn reclaim(lock: OwnedFd) -> anyhow::Result<Flock<File>> {
    let file = File::from(lock);
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .context("cannot take the home's lock over")
}

/// The control socket the previous image was listening on (`update`).
pub fn adopt_socket(fd: OwnedFd) -> anyhow::Result<UnixListener> {
    let listener = std::os::unix::net::UnixListener::from(fd);
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

/// The folders the daemon keeps in the home: the logs, their instance
/// indexes, and where instance pipes are made.
fn folders(home: &Home) -> [PathBuf; 3] {
    let logs = home.log_dir();
    let index = supd_proto::log_index::index_dir(&logs);
    [logs, index, run_dir(home)]
}

/// `SUPD_HOME/run`: where instance pipes are made (and unlinked at once).
pub fn run_dir(home: &Home) -> PathBuf {
    home.dir().join("run")
}

/// Writes `supd.pid`.
pub fn write_pid(home: &Home) -> anyhow::Result<()> {
    let pid = format!("{}\n", std::process::id());
    write_atomically(&home.pid_file(), pid.as_bytes(), false).map_err(anyhow::Error::from)
}

/// `<path><suffix>`.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates `path` anew (0600), for writing: whatever was there is removed
/// first (a link planted there goes, its target untouched), and the create
/// is exclusive and follows no link, so the file written is always one this
/// call made.
pub fn create_fresh(path: &Path) -> io::Result<File> {
    already(
        fs::remove_file(path),
        io::ErrorKind::NotFound,
        "remove",
        path,
    )?;
    open_no_symlink(
        path,
        OpenOptions::new().write(true).create_new(true).mode(0o600),
        0,
    )
    .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))
}

/// Replaces `target` by `bytes` atomically: they are written to
/// `<target>.tmp` ([`create_fresh`]), which is then renamed over `target`,
/// so a reader (or a process killed meanwhile) finds the old file or the
/// new one, never a part, and a link at either name is replaced, never
/// followed. With `durable`, the data and the rename are fsync'd too, so
/// they also survive a power loss.
pub fn write_atomically(target: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let context = |what: &str, path: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    let tmp = sibling(target, ".tmp");
    let mut file = create_fresh(&tmp)?;
    file.write_all(bytes)
        .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
        .map_err(|e| context("cannot write", &tmp, e))?;
    fs::rename(&tmp, target).map_err(|e| context("cannot rename", &tmp, e))?;
    if durable
        && let Some(dir) = target.parent()
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Removes the socket and the pid file on the way out.
pub fn remove_runtime_files(home: &Home) {
    let _ = fs::remove_file(home.socket());
    let _ = fs::remove_file(home.pid_file());
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u32 = 1000;

    fn folder(owner: u32, mode: u32) -> Seen {
        Seen {
            symlink: false,
            folder: true,
            owner,
            mode,
        }
    }

    #[test]
    fn only_a_folder_of_ours_that_nobody_else_writes_is_trusted() {
        let link = Seen {
            symlink: true,
            ..folder(US, 0o700)
        };
        let file = Seen {
            folder: false,
            ..folder(US, 0o600)
        };
        let table = [
            (folder(US, 0o700), Ok(())),
            (folder(US, 0o755), Ok(())),
            (folder(US, 0o750), Ok(())),
            (folder(US, 0o1700), Ok(())),
            (folder(US, 0o770), Err(Untrusted::OpenToOthers(0o770))),
            (folder(US, 0o702), Err(Untrusted::OpenToOthers(0o702))),
            (folder(US, 0o1777), Err(Untrusted::OpenToOthers(0o1777))),
            (folder(65534, 0o700), Err(Untrusted::Owner(65534))),
            (folder(0, 0o700), Err(Untrusted::Owner(0))),
            (link, Err(Untrusted::Symlink)),
            (file, Err(Untrusted::NotAFolder)),
        ];
        for (seen, expected) in table {
            assert_eq!(judge(seen, US), expected, "{seen:?}");
        }
    }

    #[test]
    fn explanations_name_the_path_and_the_fix() {
        let path = Path::new("/srv/h");
        let owner = Untrusted::Owner(65534).explain(path, 0);
        assert!(
            owner.contains("/srv/h is owned by uid 65534") && owner.contains("chown 0 /srv/h"),
            "{owner}"
        );
        let open = Untrusted::OpenToOthers(0o777).explain(path, 0);
        assert!(
            open.contains("mode 777") && open.contains("chmod 700 /srv/h"),
            "{open}"
        );
        assert!(
            Untrusted::Symlink
                .explain(path, 0)
                .contains("another SUPD_HOME")
        );
    }

    #[test]
    fn writing_atomically_replaces_a_planted_link_and_spares_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "precious\n").unwrap();
        let target = dir.path().join("state.json");
        for planted in [target.clone(), sibling(&target, ".tmp")] {
            let _ = fs::remove_file(&planted);
            std::os::unix::fs::symlink(&outside, &planted).unwrap();
            write_atomically(&target, b"{}", false).unwrap();
            assert_eq!(fs::read_to_string(&outside).unwrap(), "precious\n");
            assert!(
                !fs::symlink_metadata(&target)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        }
        // A folder where the temporary file goes is an error, not a silence.
        fs::create_dir(sibling(&target, ".tmp")).unwrap();
        let err = write_atomically(&target, b"{}", false).unwrap_err();
        assert!(err.to_string().contains("state.json.tmp"), "{err}");
    }
}
