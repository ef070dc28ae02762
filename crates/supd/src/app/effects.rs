//! Where the actor meets the lifecycle: [`App::feed`] gathers the
//! [`Facts`] a record's step needs, runs the pure [`lifecycle::step`], and
//! carries out the [`Effect`]s it returns — signals, timers, replies,
//! spawns — in order.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use supd_supervisor::Exit;
use supd_supervisor::group::{self, parse_signal};
use supd_supervisor::tree::Tree;

use super::actor::{App, Event};
use super::lifecycle::{self, Effect, Facts, Input, Retire, State, Timer, Why, later};
use super::{KILL_GRACE, Trouble};
use crate::instance::describe_exit;
use crate::readiness::Notice;

/// How often a draining process tree is polled.
const DRAIN_POLL: Duration = Duration::from_millis(10);

impl App {
    /// Steps record `i` on `input` and runs the effects.
    pub(super) fn feed(&mut self, i: usize, input: Input) {
        let record = &self.records[i];
        let readiness = self.config.readiness();
        let others = || {
            self.records
                .iter()
                .filter(|o| o.slot == record.slot && o.generation != record.generation)
        };
        let facts = Facts {
            now: Instant::now(),
            awaited: self.launches.contains_key(&record.generation),
            waits: readiness.waits(),
            fails_on_timeout: readiness.fails_on_timeout(),
            kill_timeout: self.config.kill_timeout,
            listen_timeout: self.config.listen_timeout,
            watchdog: self.config.watchdog,
            silent: record
                .last_keepalive
                .map_or(Duration::ZERO, |t| t.elapsed()),
            other_active: others().any(|o| o.state.is_active()),
            other_serving: others().any(|o| o.state.is_serving()),
            policy: &self.policy,
            history: record.history,
            spawn_failures: record.spawn_failures,
        };
        let (state, effects) = lifecycle::step(record.state, input, &facts);
        let acted = !effects.is_empty() || state != record.state;
        if acted && !lifecycle::listed(record.state, input, state) {
            tracing::error!(app = %self.config.name, "lifecycle: {:?} on {input:?} went to {state:?}, a step the table does not list", record.state);
        }
        self.records[i].state = state;
        for effect in effects {
            if !self.apply(i, effect) {
                break;
            }
        }
    }

    /// Runs one effect on record `i`; `false` once the record is gone.
    fn apply(&mut self, i: usize, effect: Effect) -> bool {
        let name = &*self.config.name;
        let record = &mut self.records[i];
        let (slot, generation) = (record.slot, record.generation);
        match effect {
            Effect::Spawn => {
                self.spawn(i);
                return false;
            }
            Effect::CountRestart => record.restarts += 1,
            Effect::CountSpawnFailure => record.spawn_failures += 1,
            Effect::History(history) => record.history = history,
            Effect::Arm(timer, delay) => self.arm(generation, timer, delay),
            Effect::SignalTree(pid) => {
                let signal = parse_signal(&self.config.kill_signal).unwrap_or(Signal::SIGINT);
                let tree = Tree::of(pid);
                tree.signal(signal);
                record.tree = Some(tree);
            }
            Effect::KillGroup(pid) => {
                group::signal(pid, Signal::SIGKILL);
            }
            Effect::KillTree(pid) => {
                tracing::warn!(app = %name, pid, "kill_timeout reached: SIGKILL to the process tree");
                let tree = record.tree.get_or_insert_with(|| Tree::of(pid));
                tree.refresh();
                tree.signal(Signal::SIGKILL);
            }
            Effect::Drain { pid, until } => {
                // Reaped already: only a tree seen before it exited is walked.
                let tree = record.tree.take().unwrap_or_else(|| Tree::group(pid));
                let events = self.events.clone();
                tokio::spawn(async move {
                    drain(tree, until).await;
                    let _ = events.send(Event::GroupGone { generation });
                });
            }
            Effect::Answer(pid) => {
                if let Some(reply) = self.launches.remove(&generation) {
                    self.replies.send(reply, Ok(pid));
                }
            }
            Effect::Fail(why) => {
                let reason = self.reason(i, &why);
                let record = &mut self.records[i];
                match why {
                    Why::Policy(_) => {
                        tracing::error!(app = %name, instance = slot, "errored: {reason}")
                    }
                    Why::Spawn { .. } => {
                        tracing::error!("app \"{name}\" instance {slot}: {reason}")
                    }
                    _ => tracing::error!(app = %name, instance = slot, "{reason}"),
                }
                record.last_error = Some(reason.clone());
                if let Some(reply) = self.launches.remove(&generation) {
                    let message = format!("app \"{name}\" instance {slot}: {reason}");
                    self.replies.send(reply, Err(message));
                }
            }
            Effect::Warn(why) => {
                let reason = self.reason(i, &why);
                tracing::warn!(app = %name, instance = slot, "{reason}");
                self.records[i].last_error = Some(reason);
            }
            Effect::Late => {
                let reason = self.reason(i, &Why::NotReady);
                let record = &mut self.records[i];
                tracing::warn!(app = %name, instance = slot, pid = record.state.pid(), "{reason}");
                record.status_text = Some(reason);
            }
            Effect::ClearLate => record.status_text = None,
            Effect::Keepalive => {
                if let Some(period) = self.config.watchdog {
                    record.last_keepalive = Some(Instant::now());
                    self.arm(generation, Timer::WatchdogDue, period);
                }
            }
            Effect::Report(reason) => {
                let _ = self.trouble.send(Trouble {
                    app: name.to_string(),
                    generation,
                    reason,
                });
            }
            Effect::Gone(then) => return self.gone(i, then),
            Effect::Forget => {
                self.forget(i);
                return false;
            }
        }
        true
    }

    /// Arms `timer` of process `generation` for `delay` from now.
    pub(super) fn arm(&mut self, generation: u64, timer: Timer, delay: Duration) {
        self.timers
            .arm(later(Instant::now(), delay), (generation, timer));
    }

    /// The words of `why` for record `i`. A spawn's own error is in the
    /// record's `last_error` already.
    fn reason(&self, i: usize, why: &Why) -> String {
        let readiness = self.config.readiness();
        match why {
            Why::Spawn { retry_in } => {
                let error = self.records[i].last_error.clone().unwrap_or_default();
                match retry_in {
                    Some(delay) => format!("{error}; retrying in {} ms", delay.as_millis()),
                    None => error,
                }
            }
            Why::NotReady => readiness.timeout_reason(self.config.listen_timeout),
            Why::ExitedEarly(exit) => format!(
                "exited with {} before it was ready{}",
                describe_exit(*exit),
                readiness.hint().map_or(String::new(), |h| format!("; {h}"))
            ),
            Why::Policy(reason) => reason.clone(),
        }
    }

    /// Record `i`'s process tree is gone: answers who waits on it, and
    /// forgets the record if asked; `false` if it did.
    fn gone(&mut self, i: usize, then: Retire) -> bool {
        let generation = self.records[i].generation;
        if let Some(launch) = self.launches.remove(&generation) {
            self.replies
                .send(launch, Err("stopped before it was ready".into()));
        }
        for reply in self.retires.remove(&generation).unwrap_or_default() {
            self.replies.send(reply, ());
        }
        if then == Retire::Remove {
            self.forget(i);
        }
        then == Retire::Keep
    }

    /// Forgets record `i` and whatever waits on it.
    fn forget(&mut self, i: usize) {
        let record = self.records.remove(i);
        self.launches.remove(&record.generation);
        self.retires.remove(&record.generation);
    }

    /// Process `generation` ended: recorded, then stepped.
    pub(super) fn on_exit(&mut self, generation: u64, exit: Exit) {
        let Some(i) = self.find(generation) else {
            return;
        };
        self.channels.remove(&generation);
        let record = &mut self.records[i];
        let pid = record.state.pid().unwrap_or_default();
        let uptime = record.started.map_or(Duration::ZERO, |t| t.elapsed());
        record.record_exit(exit);
        let slot = record.slot;
        tracing::info!(app = %self.config.name, instance = slot, pid, "exited with {}", describe_exit(exit));
        crate::pid_file::remove(&self.config, slot, pid);
        self.feed(i, Input::Exited { exit, uptime });
    }

    /// Process `generation` said something.
    pub(super) fn on_notice(&mut self, generation: u64, notice: Notice) {
        let Some(i) = self.find(generation) else {
            return;
        };
        let record = &mut self.records[i];
        match notice {
            Notice::Ready => {
                if let State::Launching { pid, .. } = record.state {
                    tracing::info!(app = %self.config.name, instance = record.slot, pid, "ready");
                }
                self.feed(i, Input::Ready);
            }
            Notice::Watchdog => record.last_keepalive = Some(Instant::now()),
            Notice::Stopping => record.status_text = Some("stopping".into()),
            Notice::Status(text) => record.status_text = Some(text),
            Notice::Listen { port, host } => {
                let slot = record.slot;
                self.answer_listen(generation, slot, port, host.as_deref());
            }
        }
    }
}

/// Waits until no process of `tree` is left (its group, and the
/// descendants that left it and theirs), sending SIGKILL at `deadline` if
/// some are.
async fn drain(mut tree: Tree, deadline: Instant) {
    let give_up = deadline.checked_add(KILL_GRACE).unwrap_or(deadline);
    let mut killed = false;
    while tree.alive() {
        // Children the escaped ones start meanwhile are theirs too.
        tree.refresh();
        let now = Instant::now();
        if now >= deadline && !killed {
            tree.signal(Signal::SIGKILL);
            killed = true;
        }
        if now >= give_up {
            tracing::error!(?tree, "process tree survived SIGKILL; giving up on it");
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
