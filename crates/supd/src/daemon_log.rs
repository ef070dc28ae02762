//! The daemon's own log: what `tracing` writes, to stderr.
//!
//! When stderr is `SUPD_HOME/supd.log` (as `supctl` starts the daemon), the
//! file is kept small: once it passes `SUPD_LOG_MAX_SIZE` (default 10M) it
//! is renamed `supd.log.1`, replacing the previous one, and a new
//! `supd.log` takes the place of stderr (and of stdout, when that was the
//! same file). An app that crash-loops for days then costs at most twice
//! that much disk. A daemon run by hand or by systemd writes to whatever its
//! stderr is, untouched.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use supd_proto::Home;

/// The size `supd.log` is rotated at without `SUPD_LOG_MAX_SIZE`.
const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;

/// A writer for `tracing`: stderr, rotated when it is `supd.log`. Clones
/// share the size count.
#[derive(Clone)]
pub struct DaemonLog(Option<Arc<Mutex<Rotating>>>);

/// `supd.log` as stderr, and how much it holds.
struct Rotating {
    path: PathBuf,
    size: u64,
    max_size: u64,
}

impl DaemonLog {
    /// The log of the daemon of `home`; an error names a bad
    /// `SUPD_LOG_MAX_SIZE`.
    pub fn new(home: &Home) -> Result<DaemonLog, String> {
        let max_size = match std::env::var("SUPD_LOG_MAX_SIZE") {
            Ok(text) => supd_config::parse_size(&text)
                .map_err(|e| format!("SUPD_LOG_MAX_SIZE={text:?}: {e}"))?,
            Err(_) => DEFAULT_MAX_SIZE,
        };
        let path = home.daemon_log();
        let stderr = nix::sys::stat::fstat(io::stderr()).ok();
        // Not through a link: a `supd.log` that is one is never ours.
        let file = fs::symlink_metadata(&path).ok();
        let rotating = match (stderr, file) {
            (Some(fd), Some(file)) if fd.st_dev == file.dev() && fd.st_ino == file.ino() => {
                Some(Rotating {
                    path,
                    size: file.len(),
                    max_size,
                })
            }
            _ => None,
        };
        Ok(DaemonLog(rotating.map(|r| Arc::new(Mutex::new(r)))))
    }
}

impl Write for DaemonLog {
    /// Writes `buf` (one event, as `tracing` formats it) and rotates the
    /// file after it if it has grown past its size.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(rotating) = &self.0 else {
            return io::stderr().write(buf);
        };
        let mut rotating = rotating.lock().unwrap_or_else(|p| p.into_inner());
        let written = io::stderr().write(buf)?;
        rotating.size += written as u64;
        if rotating.size >= rotating.max_size {
            // Whatever happens, the next try is a full size later: a
            // failing rename must not be retried on every line.
            rotating.size = 0;
            if let Err(e) = rotating.rotate() {
                let _ = writeln!(io::stderr(), "supd: cannot rotate supd.log: {e}");
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl Rotating {
    /// `supd.log` becomes `supd.log.1`; a new `supd.log` becomes stderr,
    /// and stdout if it was the same file.
    fn rotate(&mut self) -> io::Result<()> {
        let stdout_too = match (
            nix::sys::stat::fstat(io::stdout()),
            nix::sys::stat::fstat(io::stderr()),
        ) {
            (Ok(out), Ok(err)) => out.st_dev == err.st_dev && out.st_ino == err.st_ino,
            _ => false,
        };
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        fs::rename(&self.path, old)?;
        let file = supd_proto::home::open_no_symlink(
            &self.path,
            OpenOptions::new().create(true).append(true),
            0,
        )?;
        if stdout_too {
            nix::unistd::dup2_stdout(&file)?;
        }
        nix::unistd::dup2_stderr(&file)?;
        Ok(())
    }
}
