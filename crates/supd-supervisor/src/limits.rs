//! The daemon's limit on open descriptors: raised for itself, given back to
//! its children.
//!
//! Every instance costs the daemon three descriptors (the read ends of its
//! stdout and stderr pipes, and its notify socket) and every app two log
//! files, so a thousand processes need over 3,000: far above the soft
//! `RLIMIT_NOFILE` of 1024 that most sessions start with. Past it, spawning
//! fails with "Too many open files". So the daemon raises its soft limit to
//! the hard one at start (as systemd advises for programs that need many
//! descriptors), and the spawner puts the original soft limit back in each
//! child before exec: a program that uses `select()` (descriptors below 1024
//! only) or closes every descriptor up to its limit gets what it would have
//! got without us.

use std::io;
use std::sync::OnceLock;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The limit the daemon started with, once it raised its own.
static INHERITED: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises the soft limit on open descriptors to the hard limit, once;
/// returns the soft limit before and after.
pub fn raise_open_files() -> io::Result<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        let _ = INHERITED.set(libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        });
    }
    Ok((soft, soft.max(hard)))
}

/// The limit (soft, hard) the daemon started with, if it raised its own:
/// handed to its next image by `update`, which starts with the raised one.
pub fn inherited() -> Option<(u64, u64)> {
    INHERITED.get().map(|l| (l.rlim_cur, l.rlim_max))
}

/// Takes the limit the previous image started with as this one's own
/// (`update`), so children keep getting what they got before.
pub fn remember_inherited(soft: u64, hard: u64) {
    let _ = INHERITED.set(libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    });
}

/// The limit a child must get back before exec, if the daemon raised its own.
pub(crate) fn for_children() -> Option<libc::rlimit> {
    INHERITED.get().copied()
}
