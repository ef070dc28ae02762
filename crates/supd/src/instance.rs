//! One instance slot of an app: its state and what `list`/`show` see of it.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use supd_proto::{ExitInfo, InstanceDetail, ProcessInfo, Status};
use supd_supervisor::tree::Tree;
use supd_supervisor::{Exit, RunHistory};

/// The daemon's record of one instance slot. Owned by its app actor; handed
/// to the daemon's next image by `update` (moments as ages).
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
    /// During a stop: when SIGKILL goes to the group.
    #[serde(skip)]
    pub kill_deadline: Option<Instant>,
    /// During a stop: the process's tree as seen when the stop began, so
    /// descendants that left its group are stopped with it.
    #[serde(skip)]
    pub tree: Option<Tree>,
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
            kill_deadline: None,
            tree: None,
            status_text: None,
            late: false,
            spawn_failures: 0,
            restart_reason: None,
            last_keepalive: None,
        }
    }

    /// Whether a process is running or about to be.
    pub fn is_active(&self) -> bool {
        matches!(
            self.status,
            Status::Launching | Status::Online | Status::Stopping | Status::WaitingRestart
        )
    }

    /// What the state file records of this record: slot, pid, and whether
    /// it runs or is about to.
    pub fn recorded(&self) -> (u32, Option<u32>, bool) {
        (self.slot, self.pid, self.is_active())
    }

    /// Records how the process ended and forgets its pid.
    pub fn record_exit(&mut self, exit: Exit) {
        let (code, signal) = match exit {
            Exit::Code(c) => (Some(c), None),
            Exit::Signal(s) => (None, Some(s)),
            Exit::Unknown => (None, None),
        };
        self.last_exit = Some(ExitInfo {
            code,
            signal,
            at_ms: supd_proto::unix_ms(),
        });
        self.pid = None;
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
