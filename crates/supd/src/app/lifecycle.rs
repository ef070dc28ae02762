//! The lifecycle of one instance record, as data: a pure [`step`] from a
//! [`State`] and an [`Input`] to the next state and the [`Effect`]s the actor
//! then runs. No process, clock or channel is touched here, so every rule
//! can be read in one place ([`TABLE`]) and tested without spawning anything.
//!
//! The states carry their data (a process id only where a process runs), so
//! an `online` record without a process cannot be written down. What the
//! rules need to know about the record's surroundings (another process of
//! the slot, the readiness kind, the restart policy) comes in [`Facts`].

mod types;

use std::time::{Duration, Instant};

use supd_supervisor::{Decision, Policy, RunHistory, transient};

pub use types::*;

/// One rule: from a state, on an input, when a condition holds, to a state
/// with effects. A (state, input) pair absent from the table is ignored.
#[derive(Debug)]
pub struct Row {
    /// The state the record is in.
    pub from: &'static [Kind],
    /// What happens.
    pub on: On,
    /// The condition (a fact), or `""` for always. Read by people and by
    /// the table test, which pairs each row with a case.
    #[cfg_attr(not(test), allow(dead_code))]
    pub when: &'static str,
    /// The state it goes to (`None`: it stays).
    pub to: Option<Kind>,
    /// What the actor does, in words (for people reading the table).
    #[allow(dead_code)]
    pub effects: &'static str,
}

use Kind::*;

/// The transition table: what [`step`] does, row by row. The rows of one
/// state and input are read in order: the first whose condition holds
/// applies. The test walks every row, and checks that every pair not here
/// is ignored.
#[rustfmt::skip]
pub const TABLE: &[Row] = &[
    Row { from: &[Stopped, Errored, WaitingRestart], on: On::Launch, when: "",
          to: None, effects: "spawn (then Spawned or SpawnFailed)" },
    Row { from: &[Stopped, Errored, WaitingRestart], on: On::Spawned, when: "readiness waits",
          to: Some(Launching), effects: "arm ready timeout" },
    Row { from: &[Stopped, Errored, WaitingRestart], on: On::Spawned, when: "readiness does not wait",
          to: Some(Online), effects: "answer launch, watch keep-alives" },
    Row { from: &[Stopped, Errored, WaitingRestart], on: On::SpawnFailed, when: "other active in slot",
          to: Some(Errored), effects: "fail launch, forget" },
    Row { from: &[Stopped, Errored, WaitingRestart], on: On::SpawnFailed, when: "transient",
          to: Some(WaitingRestart), effects: "count failure, arm retry, fail launch" },
    Row { from: &[Stopped, Errored, WaitingRestart], on: On::SpawnFailed, when: "",
          to: Some(Errored), effects: "fail launch" },
    Row { from: &[Launching], on: On::Ready, when: "",
          to: Some(Online), effects: "answer launch, watch keep-alives" },
    Row { from: &[Online], on: On::Ready, when: "late",
          to: Some(Online), effects: "no longer late: clear status text" },
    Row { from: &[Launching], on: On::ReadyTimeout, when: "readiness does not fail on timeout",
          to: Some(Online), effects: "late, answer launch, watch keep-alives" },
    Row { from: &[Launching], on: On::ReadyTimeout, when: "awaited, other active in slot",
          to: Some(Errored), effects: "kill group, fail launch, forget" },
    Row { from: &[Launching], on: On::ReadyTimeout, when: "awaited",
          to: Some(Errored), effects: "kill group, fail launch" },
    Row { from: &[Launching], on: On::ReadyTimeout, when: "",
          to: Some(Launching), effects: "warn, kill group (its exit meets the policy)" },
    Row { from: &[Stopping], on: On::Exited, when: "",
          to: Some(Draining), effects: "drain the tree" },
    Row { from: &[Launching], on: On::Exited, when: "awaited, other active in slot",
          to: Some(Errored), effects: "kill group, fail launch, forget" },
    Row { from: &[Launching], on: On::Exited, when: "awaited",
          to: Some(Errored), effects: "kill group, fail launch" },
    Row { from: &[Launching, Online], on: On::Exited, when: "other serving in slot",
          to: Some(Stopped), effects: "kill group, forget" },
    Row { from: &[Launching, Online], on: On::Exited, when: "policy: restart now",
          to: Some(WaitingRestart), effects: "kill group, history, count restart, spawn" },
    Row { from: &[Launching, Online], on: On::Exited, when: "policy: restart later",
          to: Some(WaitingRestart), effects: "kill group, history, arm restart" },
    Row { from: &[Launching, Online], on: On::Exited, when: "policy: stop",
          to: Some(Stopped), effects: "kill group, history" },
    Row { from: &[Launching, Online], on: On::Exited, when: "policy: errored",
          to: Some(Errored), effects: "kill group, history, fail" },
    Row { from: &[WaitingRestart], on: On::RestartDue, when: "",
          to: Some(WaitingRestart), effects: "count restart, spawn" },
    Row { from: &[Launching, Online], on: On::Retire, when: "",
          to: Some(Stopping), effects: "kill_signal to the tree, arm kill" },
    Row { from: &[Stopping], on: On::Retire, when: "",
          to: Some(Stopping), effects: "forget afterwards if asked" },
    Row { from: &[Draining], on: On::Retire, when: "",
          to: Some(Draining), effects: "forget afterwards if asked" },
    Row { from: &[Stopped, Errored, WaitingRestart], on: On::Retire, when: "",
          to: Some(Stopped), effects: "gone: answer, forget if asked" },
    Row { from: &[Stopping], on: On::KillDue, when: "not killed yet",
          to: Some(Stopping), effects: "SIGKILL the tree" },
    Row { from: &[Draining], on: On::GroupGone, when: "",
          to: Some(Stopped), effects: "gone: answer, forget if asked" },
    Row { from: &[Online], on: On::WatchdogDue, when: "watchdog, silent a whole period",
          to: Some(Online), effects: "report, look again in a period" },
    Row { from: &[Online], on: On::WatchdogDue, when: "watchdog",
          to: Some(Online), effects: "look again when the period ends" },
];

/// The next state of a record in `state` on `input`, and what the actor
/// does about it (see [`TABLE`]). An input the state has no rule for
/// leaves it unchanged, with no effect (a stale event).
pub fn step(state: State, input: Input, facts: &Facts<'_>) -> (State, Vec<Effect>) {
    use Effect as E;
    use State as S;
    let ignored = (state, Vec::new());
    let idle = matches!(state, S::Stopped | S::Errored | S::WaitingRestart);
    // A failed launch: what is left of its group is killed, and the record
    // is forgotten if another process of the slot is active.
    let failed = |pid: u32, why: Why| {
        let mut effects = vec![E::KillGroup(pid), E::Fail(why)];
        if facts.other_active {
            effects.push(E::Forget);
        }
        (S::Errored, effects)
    };
    match (state, input) {
        (_, Input::Launch) if idle => (state, vec![E::Spawn]),
        (_, Input::Spawned { pid }) if idle => {
            if facts.waits {
                let awaited = facts.awaited;
                let timeout = E::Arm(Timer::ReadyTimeout, facts.listen_timeout);
                (S::Launching { pid, awaited }, vec![timeout])
            } else {
                let online = S::Online { pid, late: false };
                (online, vec![E::Answer(pid), E::Keepalive])
            }
        }
        (_, Input::SpawnFailed { .. }) if idle && facts.other_active => {
            let why = Why::Spawn { retry_in: None };
            (S::Errored, vec![E::Fail(why), E::Forget])
        }
        (_, Input::SpawnFailed { transient: true }) if idle => {
            let delay = transient::retry_delay(facts.spawn_failures);
            let why = Why::Spawn {
                retry_in: Some(delay),
            };
            let effects = vec![
                E::CountSpawnFailure,
                E::Arm(Timer::RestartDue, delay),
                E::Fail(why),
            ];
            (S::WaitingRestart, effects)
        }
        (_, Input::SpawnFailed { transient: false }) if idle => {
            (S::Errored, vec![E::Fail(Why::Spawn { retry_in: None })])
        }
        (S::Launching { pid, .. }, Input::Ready) => (
            S::Online { pid, late: false },
            vec![E::Answer(pid), E::Keepalive],
        ),
        (S::Online { pid, late: true }, Input::Ready) => {
            (S::Online { pid, late: false }, vec![E::ClearLate])
        }
        (S::Launching { pid, awaited }, Input::ReadyTimeout) => {
            if !facts.fails_on_timeout {
                let online = S::Online { pid, late: true };
                (online, vec![E::Late, E::Answer(pid), E::Keepalive])
            } else if awaited {
                failed(pid, Why::NotReady)
            } else {
                (state, vec![E::Warn(Why::NotReady), E::KillGroup(pid)])
            }
        }
        (
            S::Stopping {
                pid, kill_at, then, ..
            },
            Input::Exited { .. },
        ) => (
            S::Draining { kill_at, then },
            vec![E::Drain {
                pid,
                until: kill_at,
            }],
        ),
        (S::Launching { pid, awaited: true }, Input::Exited { exit, .. }) => {
            // Reaped already: only the rest of its group is killed.
            failed(pid, Why::ExitedEarly(exit))
        }
        (S::Launching { pid, .. } | S::Online { pid, .. }, Input::Exited { exit, uptime }) => {
            // The instance is its process group: leftovers of a crashed
            // leader would hold its port and its memory.
            let mut effects = vec![E::KillGroup(pid)];
            if facts.other_serving {
                // Restarting this one would leave two processes in the slot.
                effects.push(E::Forget);
                return (S::Stopped, effects);
            }
            let mut history = facts.history;
            let decision = facts.policy.on_exit(&mut history, exit, uptime);
            effects.push(E::History(history));
            let to = match decision {
                Decision::Restart { delay } if delay.is_zero() => {
                    effects.extend([E::CountRestart, E::Spawn]);
                    S::WaitingRestart
                }
                Decision::Restart { delay } => {
                    effects.push(E::Arm(Timer::RestartDue, delay));
                    S::WaitingRestart
                }
                Decision::Stop => S::Stopped,
                Decision::Errored { reason } => {
                    effects.push(E::Fail(Why::Policy(reason)));
                    S::Errored
                }
            };
            (to, effects)
        }
        (S::WaitingRestart, Input::RestartDue) => (state, vec![E::CountRestart, E::Spawn]),
        (S::Launching { pid, .. } | S::Online { pid, .. }, Input::Retire { then }) => {
            let kill_at = later(facts.now, facts.kill_timeout);
            let stopping = S::Stopping {
                pid,
                kill_at,
                then,
                killed: false,
            };
            let effects = vec![
                E::SignalTree(pid),
                E::Arm(Timer::KillDue, facts.kill_timeout),
            ];
            (stopping, effects)
        }
        (
            S::Stopping {
                pid,
                kill_at,
                then: was,
                killed,
            },
            Input::Retire { then },
        ) => (
            S::Stopping {
                pid,
                kill_at,
                then: was.max(then),
                killed,
            },
            Vec::new(),
        ),
        (S::Draining { kill_at, then: was }, Input::Retire { then }) => (
            S::Draining {
                kill_at,
                then: was.max(then),
            },
            Vec::new(),
        ),
        (_, Input::Retire { then }) if idle => (S::Stopped, vec![E::Gone(then)]),
        (
            S::Stopping {
                pid,
                kill_at,
                then,
                killed: false,
            },
            Input::KillDue,
        ) => {
            let killed = S::Stopping {
                pid,
                kill_at,
                then,
                killed: true,
            };
            (killed, vec![E::KillTree(pid)])
        }
        (S::Draining { then, .. }, Input::GroupGone) => (S::Stopped, vec![E::Gone(then)]),
        (S::Online { .. }, Input::WatchdogDue) => match facts.watchdog {
            Some(period) if facts.silent >= period => {
                let reason = format!(
                    "watchdog: no WATCHDOG=1 for {} ms (watchdog {} ms)",
                    facts.silent.as_millis(),
                    period.as_millis()
                );
                // Looked at again a period later: if the replacement failed,
                // the process is still silent and is reported again.
                (
                    state,
                    vec![E::Report(reason), E::Arm(Timer::WatchdogDue, period)],
                )
            }
            Some(period) => (
                state,
                vec![E::Arm(Timer::WatchdogDue, period - facts.silent)],
            ),
            None => ignored,
        },
        _ => ignored,
    }
}

/// Whether [`TABLE`] has a row for the step from `from` on `input` to `to`.
/// The actor checks every step that did something against it, so a rule
/// changed in [`step`] but not in the table is logged by any test run.
pub fn listed(from: State, input: Input, to: State) -> bool {
    TABLE.iter().any(|row| {
        row.on == input.on()
            && row.from.contains(&from.kind())
            && row.to.unwrap_or(from.kind()) == to.kind()
    })
}

/// How long a record handed over by an `update` while waiting to restart
/// still waits: the delay it was given, counted again from the takeover
/// (when it was due does not cross the exec). A spawn that failed for lack
/// of a resource waits its retry delay; a crash, the policy's delay (its
/// back-off, if one grows).
pub fn resumed_restart_delay(
    policy: &Policy,
    history: RunHistory,
    spawn_failures: u32,
) -> Duration {
    match spawn_failures.checked_sub(1) {
        Some(failed_before) => transient::retry_delay(failed_before),
        None => history
            .backoff
            .or(policy.exp_backoff)
            .unwrap_or(policy.restart_delay),
    }
}

/// `delay` after `now`; a delay too large for the clock means "far away".
pub fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

#[cfg(test)]
mod tests;
