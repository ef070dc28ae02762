//! The actor's record of one process slot: its [`State`] (which carries the
//! pid) and what `show` tells of its history. The rest of the daemon never
//! sees a record, only its [`Instance`] view, which is also what an `update`
//! hands over: the view's format is the one the previous release wrote.

use std::time::{Duration, Instant};

use supd_proto::ExitInfo;
use supd_supervisor::tree::Tree;
use supd_supervisor::{Exit, RunHistory};

use super::lifecycle::{Retire, State, later};
use crate::instance::Instance;

/// One process slot, as its actor knows it.
#[derive(Debug)]
pub struct Record {
    /// Where it is in its lifecycle.
    pub state: State,
    /// 0-based slot number, stable across restarts.
    pub slot: u32,
    /// Bumped at every spawn; events from an older process carry an older
    /// generation and find no record.
    pub generation: u64,
    /// When the latest process started.
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
    /// The last sign of life for the watchdog.
    pub last_keepalive: Option<Instant>,
    /// Why the daemon last restarted this slot by itself, if it did.
    pub restart_reason: Option<String>,
    /// Spawns in a row that failed for lack of a resource.
    pub spawn_failures: u32,
    /// During a stop: the process's tree as seen when the stop began, so
    /// descendants that left its group are stopped with it.
    pub tree: Option<Tree>,
}

impl Record {
    /// A slot that has never run.
    pub fn new(slot: u32) -> Record {
        Record::from_view(Instance::new(slot), Duration::ZERO)
    }

    /// The record behind a view handed over by the previous image (or a
    /// new slot's). A process state without a pid cannot be taken over: it
    /// is stopped (a stop whose main process was reaped before the update,
    /// whose drain did not cross it). A stop goes on, with its
    /// `kill_timeout` counted from now.
    pub fn from_view(view: Instance, kill_timeout: Duration) -> Record {
        use supd_proto::Status as S;
        let state = match (view.status, view.pid) {
            (S::Launching, Some(pid)) => State::Launching {
                pid,
                awaited: false,
            },
            (S::Online, Some(pid)) => State::Online {
                pid,
                late: view.late,
            },
            (S::Stopping, Some(pid)) => State::Stopping {
                pid,
                kill_at: later(Instant::now(), kill_timeout),
                then: Retire::Keep,
                killed: false,
            },
            (S::WaitingRestart, _) => State::WaitingRestart,
            (S::Errored, _) => State::Errored,
            _ => State::Stopped,
        };
        Record {
            state,
            slot: view.slot,
            generation: view.generation,
            started: view.started,
            restarts: view.restarts,
            history: view.history,
            last_exit: view.last_exit,
            last_error: view.last_error,
            status_text: view.status_text,
            last_keepalive: view.last_keepalive,
            restart_reason: view.restart_reason,
            spawn_failures: view.spawn_failures,
            tree: None,
        }
    }

    /// What `list`, `show`, the state file and an `update` see of it.
    pub fn view(&self) -> Instance {
        Instance {
            slot: self.slot,
            generation: self.generation,
            status: self.state.status(),
            pid: self.state.pid(),
            started: self.started,
            restarts: self.restarts,
            history: self.history,
            last_exit: self.last_exit,
            last_error: self.last_error.clone(),
            status_text: self.status_text.clone(),
            late: matches!(self.state, State::Online { late: true, .. }),
            last_keepalive: self.last_keepalive,
            restart_reason: self.restart_reason.clone(),
            spawn_failures: self.spawn_failures,
        }
    }

    /// Records how the process ended (its pid goes with the state's step).
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
    }
}

#[cfg(test)]
mod tests {
    use supd_proto::Status;

    use super::*;

    #[test]
    fn a_view_taken_over_gives_back_the_same_view() {
        let table = [
            (Status::Launching, Some(7), Status::Launching),
            (Status::Online, Some(7), Status::Online),
            (Status::Stopping, Some(7), Status::Stopping),
            (Status::WaitingRestart, None, Status::WaitingRestart),
            (Status::Errored, None, Status::Errored),
            (Status::Stopped, None, Status::Stopped),
            // A stop whose process was reaped before the update: stopped.
            (Status::Stopping, None, Status::Stopped),
        ];
        for (status, pid, want) in table {
            let mut view = Instance::new(2);
            (view.status, view.pid, view.generation, view.restarts) = (status, pid, 9, 3);
            let back = Record::from_view(view.clone(), Duration::from_secs(1)).view();
            assert_eq!(
                (back.status, back.pid),
                (want, pid.filter(|_| want != Status::Stopped))
            );
            assert_eq!((back.slot, back.generation, back.restarts), (2, 9, 3));
        }
    }

    #[test]
    fn the_previous_release_records_hand_over_unchanged() {
        // Written by the daemon released before records carried their state.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/handover/previous.json"
        );
        let handover: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let records = handover["apps"].as_array().unwrap().iter();
        let records: Vec<&serde_json::Value> = records
            .flat_map(|app| app["instances"].as_array().unwrap())
            .collect();
        assert_eq!(records.len(), 5);
        for written in records {
            let view: Instance = serde_json::from_value(written.clone()).unwrap();
            let back = Record::from_view(view, Duration::from_secs(1)).view();
            let mut back = serde_json::to_value(back).unwrap();
            // Ages are counted again as the view is written.
            for age in ["started", "last_keepalive"] {
                let was = written[age].as_u64();
                let now = back[age].as_u64();
                assert!(
                    now >= was && now <= was.map(|ms| ms + 1000),
                    "{age}: {was:?} -> {now:?}"
                );
                back[age] = written[age].clone();
            }
            assert_eq!(&back, written);
        }
    }
}
