//! The running image of the daemon: what `ping` shows of it and what
//! `supctl update` replaces (see [`crate::update`]).
//!
//! Its own module so the table of apps can hold it without depending on
//! the update that uses the table.

use std::os::fd::RawFd;
use std::path::PathBuf;

/// The running image of the daemon.
#[derive(Debug)]
pub struct Image {
    /// The binary it was started from (an update runs what is there now).
    pub binary: PathBuf,
    /// When this image started (Unix ms).
    pub started_ms: u64,
    /// `started`, or `updated from <version>`.
    pub origin: String,
    /// The control socket.
    pub control: RawFd,
    /// The open file holding the home's lock.
    pub lock: RawFd,
}
