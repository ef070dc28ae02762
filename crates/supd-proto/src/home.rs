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
