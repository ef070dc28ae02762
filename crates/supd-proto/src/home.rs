//! Where a daemon keeps its state: `SUPD_HOME` (default `$HOME/.supd`).
//!
//! Both sides use these paths: the daemon creates them, the CLI finds the
//! socket and the log files through them.

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
