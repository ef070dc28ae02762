//! Where a daemon keeps its state: `SUPD_HOME` (default `$HOME/.supd`).
//!
//! Both sides use these paths: the daemon creates them, the CLI finds the
//! socket and the log files through them. Both sides also open files there
//! only through [`open_no_symlink`]: a symbolic link planted in the home must
//! never make the daemon write, truncate or read a file elsewhere, nor
//! `supctl logs` print one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The paths under one `SUPD_HOME`.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `SUPD_HOME`, else `$HOME/.supd`, else `./.supd`.
    pub fn from_env() -> Home {
        let dir = std::env::var_os("SUPD_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".supd")))
            .unwrap_or_else(|| PathBuf::from(".supd"));
        Home { dir }
    }

    /// A home at an explicit folder.
    pub fn at(dir: impl Into<PathBuf>) -> Home {
        Home { dir: dir.into() }
    }

    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The control socket, `supd.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("supd.sock")
    }

    /// The daemon's pid, `supd.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("supd.pid")
    }

    /// Held (flock) by the running daemon: one daemon per home.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("supd.lock")
    }

    /// The daemon's own log, `supd.log`.
    pub fn daemon_log(&self) -> PathBuf {
        self.dir.join("supd.log")
    }

    /// The apps' log files, `logs/`.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

/// Opens `path` with `options` and the extra open(2) `flags`, refusing a
/// symbolic link in its place (`O_NOFOLLOW`): the error then names the path
/// and says why, instead of the kernel's "Too many levels of symbolic links".
pub fn open_no_symlink(path: &Path, options: &mut OpenOptions, flags: i32) -> io::Result<File> {
    options
        .custom_flags(flags | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is a symbolic link, which supd never follows in its home (remove it)",
                    path.display()
                ),
            ),
            _ => e,
        })
}

/// Opens a file of the home for reading, without following a symbolic link
/// and without waiting for a writer if a FIFO was planted there.
pub fn open_to_read(path: &Path) -> io::Result<File> {
    open_no_symlink(path, OpenOptions::new().read(true), libc::O_NONBLOCK)
}

/// The whole of a file of the home, read as [`open_to_read`] opens it.
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut open_to_read(path)?, &mut bytes)?;
    Ok(bytes)
}

/// The rotated files of the log file `current` (`NAME-out.log.<time>`,
/// optionally `.gz`), oldest first. Files being compressed (`.tmp`) are
/// left out.
pub fn rotated(current: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (
        current.parent(),
        current.file_name().and_then(|n| n.to_str()),
    ) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".tmp"))
        })
        .collect();
    files.sort();
    // Mid-compression both `X` and `X.gz` exist: they are the same lines.
    let gz: Vec<PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gz"))
        .cloned()
        .collect();
    files.retain(|p| {
        let mut zipped = p.as_os_str().to_owned();
        zipped.push(".gz");
        !gz.contains(&PathBuf::from(zipped))
    });
    files
}

/// The name a log file gets when it is rotated at `stamp`
/// (`YYYYmmdd-HHMMSS.fffffffff`, so names sort by time).
pub fn rotated_name(current: &Path, stamp: &str) -> PathBuf {
    let mut name = current.as_os_str().to_owned();
    name.push(".");
    name.push(stamp);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbolic_link_is_refused_with_its_path() {
        let dir = std::env::temp_dir().join(format!("supd-proto-home-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (target, link) = (dir.join("target"), dir.join("link"));
        std::fs::write(&target, "secret\n").unwrap();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = read_file(&link).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{} is a symbolic link", link.display())),
            "{err}"
        );
        assert_eq!(read_file(&target).unwrap(), b"secret\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
