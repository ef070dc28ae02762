//! What the daemon sees of one instance slot of an app (`list`, `show`, the
//! state file, an `update`'s handover), and the one definition of each
//! status predicate. Its actor keeps the record behind it (see
//! `app::record`), whose lifecycle state carries the pid; this view is its
//! projection, in the format earlier releases hand over.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use supd_proto::{ExitInfo, InstanceDetail, ProcessInfo, Status};
use supd_supervisor::{Exit, RunHistory};

/// The view of one instance slot, as its app actor published it; handed to
/// the daemon's next image by `update` (moments as ages).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    /// 0-based slot number, stable across restarts.
    pub slot: u32,
    /// Bumped at every spawn; events from an older process carry an older
    /// generation and are ignored.
    pub generation: u64,
    /// Lifecycle state.
    pub status: Status,
    /// Pid (also the process group id) of the running process.
    pub pid: Option<u32>,
    /// When the running process started.
    #[serde(with = "age")]
    pub started: Option<Instant>,
    /// Restarts so far, automatic and requested.
    pub restarts: u32,
    /// Unstable-run count and back-off, for the restart policy.
    pub history: RunHistory,
    /// How the previous process ended.
    pub last_exit: Option<ExitInfo>,
    /// Why it is errored, or why it was last restarted.
    pub last_error: Option<String>,
    /// The last `STATUS=` (or `STOPPING=1`) the process sent, or why it
    /// was counted online without saying it was ready.
    pub status_text: Option<String>,
    /// Counted online at `listen_timeout` without having reported that it
    /// listens (a slow Node server, see `Readiness::fails_on_timeout`); its
    /// late word clears `status_text`.
    #[serde(default)]
    pub late: bool,
    /// The last sign of life for the watchdog (readiness or `WATCHDOG=1`).
    #[serde(with = "age")]
    pub last_keepalive: Option<Instant>,
    /// Why the daemon last restarted this slot by itself (memory limit,
    /// health check, watchdog), if it did.
    pub restart_reason: Option<String>,
    /// Spawns in a row that failed for lack of a resource (descriptors,
    /// disk space): the back-off of their retries.
    #[serde(default)]
    pub spawn_failures: u32,
}

impl Instance {
    /// A slot that has never run.
    pub fn new(slot: u32) -> Instance {
        Instance {
            slot,
            generation: 0,
            status: Status::Stopped,
            pid: None,
            started: None,
            restarts: 0,
            history: RunHistory::default(),
            last_exit: None,
            last_error: None,
            status_text: None,
            late: false,
            spawn_failures: 0,
            restart_reason: None,
            last_keepalive: None,
        }
    }

    /// See [`active`].
    pub fn is_active(&self) -> bool {
        active(self.status)
    }

    /// See [`serving`].
    pub fn is_serving(&self) -> bool {
        serving(self.status)
    }

    /// What the state file records of this record: slot, pid, and whether
    /// it runs or is about to.
    pub fn recorded(&self) -> (u32, Option<u32>, bool) {
        (self.slot, self.pid, self.is_active())
    }

    /// Milliseconds the current process has been running (0 if none).
    pub fn uptime_ms(&self) -> u64 {
        match (self.pid, self.started) {
            (Some(_), Some(t)) => t.elapsed().as_millis() as u64,
            _ => 0,
        }
    }

    /// The `show` view; `process` is the `list` view built by the caller.
    pub fn detail(&self, process: ProcessInfo) -> InstanceDetail {
        InstanceDetail {
            process,
            unstable_restarts: self.history.unstable_restarts,
            last_exit: self.last_exit,
            last_error: self.last_error.clone(),
            status_text: self.status_text.clone(),
            restart_reason: self.restart_reason.clone(),
        }
    }
}

/// Whether a record in `status` has a process running or about to (a
/// restart is due): the state file records it as running, and a new
/// process of its slot that cannot start leaves the slot to it.
pub fn active(status: Status) -> bool {
    matches!(
        status,
        Status::Launching | Status::Online | Status::Stopping | Status::WaitingRestart
    )
}

/// Whether a record in `status` has a process (or what is left of its tree)
/// running: a launch does not reuse it, and its slot's socket stays open.
pub fn live(status: Status) -> bool {
    matches!(
        status,
        Status::Launching | Status::Online | Status::Stopping
    )
}

/// Whether a record in `status` serves its slot or is about to: it takes
/// over from another process of the slot that exits or is superseded.
pub fn serving(status: Status) -> bool {
    matches!(status, Status::Launching | Status::Online)
}

/// Describes an exit for people: `exit code 1`, `signal 9 (SIGKILL)`.
pub fn describe_exit(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exit code {c}"),
        Exit::Unknown => "an exit whose status was collected before a daemon update".into(),
        Exit::Signal(s) => match nix::sys::signal::Signal::try_from(s) {
            Ok(sig) => format!("signal {s} ({})", sig.as_str()),
            Err(_) => format!("signal {s}"),
        },
    }
}

/// A past moment as its age in milliseconds, so it means the same in
/// another process image (an `Instant` does not cross `execve`).
mod age {
    use std::time::{Duration, Instant};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(at: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        at.map(|t| t.elapsed().as_millis() as u64).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        let age = Option::<u64>::deserialize(d)?;
        Ok(age.map(|ms| {
            let now = Instant::now();
            now.checked_sub(Duration::from_millis(ms)).unwrap_or(now)
        }))
    }
}
