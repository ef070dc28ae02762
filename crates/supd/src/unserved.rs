//! A port nobody serves: instances that hold the daemon's socket but never
//! accept from it, and slots that have no process at all.
//!
//! The daemon's socket queues connections whether or not anything will ever
//! accept them. That is what makes a restart lossless, and what leaves a
//! client hanging until its own timeout when the program holds fd 3 and
//! never calls `accept` (a wrapper such as `npm start` whose child binds the
//! port by itself, a script that ignores `LISTEN_FDS`), or when the slot's
//! process is gone for good (errored, stopped by the user).
//!
//! At every monitor sample the actor of an app with a port looks at each
//! slot's accept queue ([`crate::listeners::SlotSockets::queued`]):
//! - a slot with an online process whose queue has held connections and not
//!   shrunk for [`WINDOW`], and whose processes hold no connection of the
//!   port on two looks in a row (a slow server holds the one it answers:
//!   see [`held`]), is *not served*: reported (`list`, `show`), steered away
//!   from while another slot serves, and its waiting connections are reset.
//!   Its process is not killed: a long pause looks the same from here. A
//!   shrinking queue (it accepted) or a new process in the slot clears the
//!   report;
//! - a slot *down for good* (no process launching, online, stopping or
//!   waiting to restart, and errored or stopped after it ran) is steered
//!   away from, and its queue is reset at every look;
//! - neither ever happens while an operation (start, restart, reload,
//!   scale…) runs: its queue is what carries clients across it.
//!
//! New connections go to the slots that serve ([`targets`]); when none does
//! (a single instance, everything down, a restart under way), to every slot
//! in use, as before.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use supd_proto::Status;

use crate::instance::Instance;
use crate::listeners::SlotSockets;

pub mod held;

/// How long a queue must hold connections without shrinking before its slot
/// counts as not served (if its processes hold no connection of the port
/// either: see [`held`]). PM2 gives a process 3 s to listen (its default
/// `listen_timeout`); a garbage-collection pause or a busy event loop that
/// long is already an outage for the clients waiting; at the default 1 s
/// sample interval it takes four looks in a row.
pub const WINDOW: Duration = Duration::from_secs(3);

/// What the looks at one queue say about whoever should accept from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The queue shrank since the previous look: something accepted.
    Served,
    /// Nothing to tell yet (empty, or not stuck for long enough).
    Unknown,
    /// The queue has held connections and not shrunk for the whole window.
    NotServed,
}

/// The looks at one queue since it last moved: the rule "non-empty and
/// never shrank over the window" as a fold over samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueWatch {
    /// The previous sample.
    last: Option<u32>,
    /// The first of the samples, non-empty and never shrinking, up to now.
    stuck_since: Option<Instant>,
}

impl QueueWatch {
    /// Takes the sample `queued` at `at` and says what the samples so far
    /// mean.
    pub fn observe(&mut self, at: Instant, queued: u32, window: Duration) -> Verdict {
        let shrank = self.last.is_some_and(|last| queued < last);
        self.last = Some(queued);
        if queued == 0 {
            self.stuck_since = None;
        } else if shrank || self.stuck_since.is_none() {
            self.stuck_since = Some(at);
        }
        match self.stuck_since {
            _ if shrank => Verdict::Served,
            Some(since) if at.saturating_duration_since(since) >= window => Verdict::NotServed,
            _ => Verdict::Unknown,
        }
    }
}

/// Who may take the connections of one slot, from its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// Online processes (by generation) should accept.
    Serving(Vec<u64>),
    /// A process is launching, stopping or about to restart: it is coming
    /// or going, and its queue waits for it.
    Moving,
    /// No process, and none will come unless someone asks (errored, or
    /// stopped after it ran).
    Down,
    /// Never started (a slot registered but not started yet).
    Unused,
}

impl SlotState {
    /// The state of each slot `0..count`, from the app's records (in one
    /// pass: this runs at every step of an actor with up to 1,024 slots).
    pub fn of_slots(instances: &[Instance], count: u32) -> Vec<SlotState> {
        let mut by_slot: Vec<Vec<&Instance>> = vec![Vec::new(); count as usize];
        for i in instances {
            if let Some(records) = by_slot.get_mut(i.slot as usize) {
                records.push(i);
            }
        }
        by_slot.iter().map(|r| SlotState::of(r)).collect()
    }

    /// The state of a slot from its records.
    fn of(records: &[&Instance]) -> SlotState {
        let records = || records.iter().copied();
        let online: Vec<u64> = records()
            .filter(|i| i.status == Status::Online)
            .map(|i| i.generation)
            .collect();
        if !online.is_empty() {
            return SlotState::Serving(online);
        }
        if records().any(Instance::is_active) {
            return SlotState::Moving;
        }
        match records().max_by_key(|i| i.generation) {
            Some(i) if i.status == Status::Errored => SlotState::Down,
            // Generation 0 never ran: an app registered, its start to come.
            Some(i) if i.status == Status::Stopped && i.generation > 0 => SlotState::Down,
            _ => SlotState::Unused,
        }
    }
}

/// A change worth a line in the daemon's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The slot is now reported as not served.
    NotServing,
    /// It accepted again.
    ServingAgain,
    /// The first connections reset since the slot went down (later ones
    /// are not worth a line each: a health checker would fill the log).
    DownResetting,
}

/// How many looks in a row, once the queue says nobody serves the slot, must
/// find its processes holding no connection of the port: one could fall
/// between a slow server's `close` and its next `accept`.
const EMPTY_HANDED: u32 = 2;

/// What one look at a slot decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    /// Reset the connections waiting in its queue.
    pub reset: bool,
    /// What changed, if anything.
    pub report: Option<Report>,
}

/// What the actor knows of one slot's queue.
#[derive(Debug, Clone, Default, PartialEq)]
struct SlotWatch {
    /// The online processes the looks are about; a new one gets a fresh start.
    servers: Vec<u64>,
    /// The looks since the queue last moved (or was reset).
    watch: QueueWatch,
    /// Looks in a row that found the queue stuck and the processes holding
    /// no connection of the port.
    empty_handed: u32,
    /// Connections were reset since the slot went down.
    down_resetting: bool,
    /// Why the slot is reported as not served.
    problem: Option<String>,
}

impl SlotWatch {
    /// One look at the slot: `queued` connections wait, the slot is in
    /// `state`, and an operation is running or not. `holds` tells whether
    /// its processes hold a connection of the port; asked only when the
    /// queue alone says nobody serves it, and that must find none
    /// [`EMPTY_HANDED`] looks in a row.
    fn look(
        &mut self,
        at: Instant,
        state: &SlotState,
        queued: u32,
        operation: bool,
        port: u16,
        holds: impl FnOnce(&[u64]) -> bool,
    ) -> Decision {
        let servers = match state {
            SlotState::Serving(servers) => servers,
            SlotState::Down => {
                let reset = queued > 0 && !operation;
                let first = reset && !self.down_resetting;
                *self = SlotWatch {
                    down_resetting: self.down_resetting || reset,
                    ..SlotWatch::default()
                };
                return Decision {
                    reset,
                    report: first.then_some(Report::DownResetting),
                };
            }
            SlotState::Moving | SlotState::Unused => {
                *self = SlotWatch::default();
                return Decision::default();
            }
        };
        if self.servers != *servers {
            *self = SlotWatch {
                servers: servers.clone(),
                ..SlotWatch::default()
            };
        }
        let verdict = match self.watch.observe(at, queued, WINDOW) {
            // It is answering someone: slow, not deaf. Judged anew from here.
            Verdict::NotServed if holds(servers) => {
                self.watch = QueueWatch::default();
                self.empty_handed = 0;
                Verdict::Served
            }
            Verdict::NotServed => {
                self.empty_handed += 1;
                match self.empty_handed < EMPTY_HANDED {
                    true => Verdict::Unknown,
                    false => Verdict::NotServed,
                }
            }
            verdict => {
                self.empty_handed = 0;
                verdict
            }
        };
        match verdict {
            Verdict::NotServed => {
                let report = self.problem.is_none().then_some(Report::NotServing);
                self.problem = Some(format!(
                    "nothing accepts the connections on port {port}: they waited {} s unaccepted",
                    WINDOW.as_secs()
                ));
                if operation {
                    return Decision {
                        reset: false,
                        report,
                    };
                }
                // Those who waited are let go; the next ones get a window of their own.
                self.watch = QueueWatch::default();
                self.empty_handed = 0;
                Decision {
                    reset: true,
                    report,
                }
            }
            Verdict::Served => Decision {
                reset: false,
                report: self.problem.take().map(|_| Report::ServingAgain),
            },
            Verdict::Unknown => Decision::default(),
        }
    }
}

/// The slots that receive new connections: those of `0..routed` (the slots
/// in use, at most the `bound` ones with a socket) that serve, or all of
/// them when none does.
pub fn targets(routed: u32, bound: u32, serves: impl Fn(u32) -> bool) -> Vec<u32> {
    let in_use = routed.max(1).min(bound);
    let serving: Vec<u32> = (0..in_use).filter(|&slot| serves(slot)).collect();
    if serving.is_empty() {
        (0..in_use).collect()
    } else {
        serving
    }
}

/// What an app's actor keeps about its port: the slots in use, where new
/// connections are steered, and each slot's watch.
#[derive(Debug)]
pub struct PortWatch {
    /// Slots `0..routed` receive connections (fewer during a scale-down).
    routed: u32,
    /// The slots the group's program steers to, once attached.
    steered: Option<Vec<u32>>,
    /// Each slot's watch, by slot.
    slots: BTreeMap<u32, SlotWatch>,
}

impl PortWatch {
    /// A port whose first `routed` slots are in use.
    pub fn new(routed: u32) -> PortWatch {
        PortWatch {
            routed,
            steered: None,
            slots: BTreeMap::new(),
        }
    }

    /// The port was bound anew (a new number): nothing is steered there yet,
    /// and nothing was seen of its queues.
    pub fn rebound(&mut self) {
        self.steered = None;
        self.slots.clear();
    }

    /// Sets the slots in use (see [`crate::app::Command::Route`]).
    pub fn route(&mut self, routed: u32) {
        self.routed = routed;
    }

    /// One look at every slot of `sockets`, at `at`; `operation` tells that
    /// an operation runs, `holds` whether the processes of these generations
    /// hold a connection of the port. Returns each slot's decision.
    pub fn look(
        &mut self,
        at: Instant,
        sockets: &SlotSockets,
        instances: &[Instance],
        operation: bool,
        holds: impl Fn(&[u64]) -> bool,
    ) -> Vec<(u32, Decision)> {
        self.slots.retain(|&slot, _| slot < sockets.len());
        let states = SlotState::of_slots(instances, sockets.len());
        (0..)
            .zip(states)
            .map(|(slot, state)| {
                let queued = sockets.queued(slot);
                let watch = self.slots.entry(slot).or_default();
                let decision = watch.look(at, &state, queued, operation, sockets.port(), &holds);
                (slot, decision)
            })
            .collect()
    }

    /// Why each slot reported as not served is, by slot.
    pub fn problems(&self) -> BTreeMap<u32, String> {
        self.slots
            .iter()
            .filter_map(|(&slot, w)| Some((slot, w.problem.clone()?)))
            .collect()
    }

    /// Steers new connections to the slots that serve (see [`targets`]),
    /// unless they already are.
    pub fn steer(&mut self, sockets: &SlotSockets, instances: &[Instance]) -> std::io::Result<()> {
        let states = SlotState::of_slots(instances, sockets.len());
        let serves = |slot: u32| {
            matches!(states[slot as usize], SlotState::Serving(_))
                && self.slots.get(&slot).is_none_or(|w| w.problem.is_none())
        };
        let targets = targets(self.routed, sockets.len(), serves);
        if self.steered.as_ref() != Some(&targets) {
            sockets.steer(&targets)?;
            self.steered = Some(targets);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict after each of `samples` (queue length, one a second).
    fn verdicts(samples: &[u32]) -> Vec<Verdict> {
        let start = Instant::now();
        let mut watch = QueueWatch::default();
        (0..)
            .zip(samples)
            .map(|(s, &q)| watch.observe(start + Duration::from_secs(s), q, WINDOW))
            .collect()
    }

    #[test]
    fn a_queue_that_holds_and_never_shrinks_is_not_served() {
        use Verdict::{NotServed as N, Served as S, Unknown as U};
        let cases: &[(&[u32], &[Verdict])] = &[
            // Nobody ever came.
            (&[0, 0, 0, 0, 0], &[U, U, U, U, U]),
            // One client waits for good: 3 s after it was first seen.
            (&[1, 1, 1, 1, 1], &[U, U, U, N, N]),
            // More keep coming, none is taken.
            (&[2, 5, 9, 14], &[U, U, U, N]),
            // A busy server: its queue moves.
            (&[3, 7, 2, 8, 12, 4], &[U, U, S, U, U, S]),
            // Taken after 2 s: served, and the window starts again.
            (&[1, 1, 0, 1, 1, 1], &[U, U, S, U, U, U]),
            // It stalled, then took them: served again.
            (&[1, 1, 1, 1, 0], &[U, U, U, N, S]),
            // Growth after a shrink counts from the shrink.
            (&[4, 2, 3, 3, 3, 3], &[U, S, U, U, N, N]),
            // Empty in between: a new run.
            (&[1, 1, 0, 0, 1, 1, 1, 1], &[U, U, S, U, U, U, U, N]),
        ];
        for &(samples, expected) in cases {
            assert_eq!(verdicts(samples), expected, "samples {samples:?}");
        }
    }

    /// A record of `slot` in `status`, of `generation`.
    fn record(slot: u32, generation: u64, status: Status) -> Instance {
        let mut i = Instance::new(slot);
        i.generation = generation;
        i.status = status;
        i
    }

    #[test]
    fn slot_states_from_records() {
        use Status::*;
        let cases: Vec<(Vec<Instance>, SlotState)> = vec![
            (vec![record(0, 3, Online)], SlotState::Serving(vec![3])),
            // A reload: the old one serves, the new one launches.
            (
                vec![record(0, 3, Online), record(0, 4, Launching)],
                SlotState::Serving(vec![3]),
            ),
            (
                vec![record(0, 3, Stopping), record(0, 4, Online)],
                SlotState::Serving(vec![4]),
            ),
            (vec![record(0, 3, Launching)], SlotState::Moving),
            (vec![record(0, 3, WaitingRestart)], SlotState::Moving),
            (vec![record(0, 3, Stopping)], SlotState::Moving),
            (vec![record(0, 3, Errored)], SlotState::Down),
            (vec![record(0, 3, Stopped)], SlotState::Down),
            // Registered, not started yet.
            (vec![record(0, 0, Stopped)], SlotState::Unused),
            // Another slot's records do not count.
            (vec![record(1, 3, Online)], SlotState::Unused),
        ];
        for (records, expected) in cases {
            assert_eq!(SlotState::of_slots(&records, 1), [expected], "{records:?}");
        }
        let records = [
            record(1, 3, Online),
            record(0, 2, Errored),
            record(5, 4, Online),
        ];
        assert_eq!(
            SlotState::of_slots(&records, 2),
            [SlotState::Down, SlotState::Serving(vec![3])],
            "each slot by its own records; slots beyond the count left out"
        );
    }

    /// Looks at one slot, one a second: (state, queued, operation running)
    /// in, (reset, report, reported problem) out; its processes hold no
    /// connection unless the case says so.
    #[test]
    fn what_each_look_decides() {
        use Report::*;
        let serving = || SlotState::Serving(vec![7]);
        // Holding a connection, as a slow server does.
        let answering = || SlotState::Serving(vec![9]);
        type Look = (SlotState, u32, bool, bool, Option<Report>, bool);
        let cases: Vec<(&str, Vec<Look>)> = vec![
            (
                "a slot nobody serves is reported and its clients reset",
                vec![
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, false, None, false),
                    (serving(), 2, false, false, None, false),
                    // Stuck for 3 s, and nothing held: once more to be sure.
                    (serving(), 2, false, false, None, false),
                    (serving(), 2, false, true, Some(NotServing), true),
                    // The report stays; the next clients get a window too.
                    (serving(), 1, false, false, None, true),
                    (serving(), 1, false, false, None, true),
                ],
            ),
            (
                "it accepts again: the report goes",
                vec![
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, true, Some(NotServing), true),
                    (serving(), 3, false, false, None, true),
                    (serving(), 1, false, false, Some(ServingAgain), false),
                ],
            ),
            (
                "during an operation: reported, not reset until it ends",
                vec![
                    (serving(), 1, true, false, None, false),
                    (serving(), 1, true, false, None, false),
                    (serving(), 1, true, false, None, false),
                    (serving(), 1, true, false, None, false),
                    (serving(), 1, true, false, Some(NotServing), true),
                    (serving(), 1, false, true, None, true),
                ],
            ),
            (
                "a new process gets a fresh start",
                vec![
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, true, Some(NotServing), true),
                    (SlotState::Serving(vec![8]), 1, false, false, None, false),
                ],
            ),
            (
                "the queue moving between the two looks clears the suspicion",
                vec![
                    (serving(), 2, false, false, None, false),
                    (serving(), 2, false, false, None, false),
                    (serving(), 2, false, false, None, false),
                    (serving(), 2, false, false, None, false),
                    (serving(), 1, false, false, None, false),
                    (serving(), 1, false, false, None, false),
                ],
            ),
            (
                "down for good: reset at every look, never during an operation",
                vec![
                    (SlotState::Down, 0, false, false, None, false),
                    (SlotState::Down, 2, false, true, Some(DownResetting), false),
                    (SlotState::Down, 2, true, false, None, false),
                    (SlotState::Down, 1, false, true, None, false),
                    // Up and down again: worth a line again.
                    (SlotState::Moving, 0, false, false, None, false),
                    (SlotState::Down, 1, false, true, Some(DownResetting), false),
                ],
            ),
            (
                "a slow server answering someone is not reported",
                vec![
                    (answering(), 4, false, false, None, false),
                    (answering(), 4, false, false, None, false),
                    (answering(), 4, false, false, None, false),
                    (answering(), 4, false, false, None, false),
                    (answering(), 4, false, false, None, false),
                ],
            ),
            (
                "coming or going, or never started: left alone",
                vec![
                    (SlotState::Moving, 5, false, false, None, false),
                    (SlotState::Moving, 5, false, false, None, false),
                    (SlotState::Moving, 5, false, false, None, false),
                    (SlotState::Moving, 5, false, false, None, false),
                    (SlotState::Unused, 5, false, false, None, false),
                ],
            ),
        ];
        for (what, looks) in cases {
            let start = Instant::now();
            let mut watch = SlotWatch::default();
            for (second, (state, queued, operation, reset, report, problem)) in (0..).zip(looks) {
                let at = start + Duration::from_secs(second);
                let holds = |servers: &[u64]| servers == [9];
                let decision = watch.look(at, &state, queued, operation, 3000, holds);
                assert_eq!(
                    (decision, watch.problem.is_some()),
                    (Decision { reset, report }, problem),
                    "{what}: look {second}"
                );
            }
        }
    }

    #[test]
    fn connections_go_to_the_slots_that_serve() {
        let cases: &[(u32, u32, &[u32], &[u32])] = &[
            // (routed, bound, serving, targets)
            (4, 4, &[0, 1, 2, 3], &[0, 1, 2, 3]),
            (4, 4, &[0, 2, 3], &[0, 2, 3]),
            // None serves (a restart, a single instance that does not):
            // every slot in use, as without this rule.
            (4, 4, &[], &[0, 1, 2, 3]),
            (1, 1, &[], &[0]),
            // Scaling down to 2: slots 2 and 3 drain, whatever they do.
            (2, 4, &[1, 2, 3], &[1]),
            (2, 4, &[2, 3], &[0, 1]),
            // Slots in use not bound yet are not steered to.
            (4, 2, &[], &[0, 1]),
            (0, 1, &[], &[0]),
        ];
        for &(routed, bound, serving, expected) in cases {
            assert_eq!(
                targets(routed, bound, |s| serving.contains(&s)),
                expected,
                "routed {routed}, bound {bound}, serving {serving:?}"
            );
        }
    }
}
