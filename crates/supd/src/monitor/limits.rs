//! Memory limits (`max_memory_restart`): which online instances are over
//! theirs, reported for replacement, and which may cross it before the next
//! sample.
//!
//! A sample every second finds a process that crossed its limit half a
//! second late on average. So an instance whose growth since the previous
//! sample would take it past its limit before the next one is looked at
//! again every [`CLOSE_LOOK`] until then (its tree's resident memory only),
//! and so is the process that replaces one reported over its limit, from
//! its start until the next sample (a leak grows again from the start). An
//! instance that does not grow, however close to its limit, is not: idle
//! apps cost what they cost before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use supd_proto::Status;
use supd_supervisor::procfs;
use tokio::sync::mpsc;

use super::{Usage, resident, size};
use crate::app::{AppHandle, AppView, Trouble};
use crate::instance::Instance;

/// How often an instance that may cross its limit before the next sample
/// is looked at meanwhile.
pub const CLOSE_LOOK: Duration = Duration::from_millis(20);

/// How long after a memory report the same process is reported again if it
/// is still there (its replacement failed).
const REPORT_AGAIN: Duration = Duration::from_secs(30);

/// Whether an instance using `now` bytes, and `before` at the previous
/// sample (`None`: it started since, from nothing), may cross `limit`
/// before the next sample: it grew, and twice that growth again would reach
/// the limit (a margin for growth that speeds up).
fn may_cross(limit: u64, before: Option<u64>, now: u64) -> bool {
    let growth = now.saturating_sub(before.unwrap_or(0));
    growth > 0 && now.saturating_add(growth.saturating_mul(2)) >= limit
}

/// One online instance under a memory limit.
struct Limited {
    app: String,
    generation: u64,
    pid: u32,
    limit: u64,
}

/// A slot whose process was reported over its limit: its next process is
/// looked at closely as soon as it runs.
struct Replaced {
    app: AppHandle,
    slot: u32,
    /// The generation reported; its successor has a higher one.
    generation: u64,
    limit: u64,
    /// When it was reported: a successor that never comes is waited for
    /// until [`REPORT_AGAIN`].
    at: Instant,
}

/// The monitor's memory-limit state, between samples.
#[derive(Default)]
pub struct Limits {
    /// Instances reported over their limit, and when: one breach causes one
    /// restart, and a replacement that failed is asked for again later.
    reported: HashMap<u64, Instant>,
    /// Each limited instance's memory at the last sample, by generation.
    last: HashMap<u64, u64>,
    /// The instances that may cross their limit before the next sample.
    close: Vec<Limited>,
    /// Slots reported over their limit since the last sample, whose next
    /// process is not looked at closely yet.
    replaced: Vec<Replaced>,
}

impl Limits {
    /// Whether some instance is looked at before the next sample.
    pub fn watching(&self) -> bool {
        !self.close.is_empty() || !self.replaced.is_empty()
    }

    /// After a sample (`figures`, by main pid): reports the instances of
    /// the apps (`handles` and their `views`) over their limit on
    /// `trouble`, and keeps those that may cross it before the next sample.
    pub fn after_sample(
        &mut self,
        handles: &[AppHandle],
        views: &[AppView],
        figures: &HashMap<u32, Usage>,
        trouble: &mpsc::UnboundedSender<Trouble>,
    ) {
        let mut last = HashMap::new();
        self.close.clear();
        // A successor not running yet is still waited for, for a while.
        self.replaced.retain(|r| {
            let started = |i: &Instance| i.slot == r.slot && i.generation > r.generation;
            r.at.elapsed() < REPORT_AGAIN && !r.app.view().instances.iter().any(started)
        });
        for (handle, view) in handles.iter().zip(views) {
            let Some(limit) = view.config.max_memory_restart else {
                continue;
            };
            for inst in view.instances.iter().filter(|i| i.status == Status::Online) {
                let Some(pid) = inst.pid else { continue };
                let used = figures.get(&pid).map_or(0, |u| u.memory);
                let limited = Limited {
                    app: view.config.name.clone(),
                    generation: inst.generation,
                    pid,
                    limit,
                };
                let before = self.last.get(&inst.generation).copied();
                last.insert(inst.generation, used);
                if self.report(&limited, used, trouble) {
                    self.replaced.push(Replaced {
                        app: handle.clone(),
                        slot: inst.slot,
                        generation: inst.generation,
                        limit,
                        at: Instant::now(),
                    });
                } else if may_cross(limit, before, used) {
                    self.close.push(limited);
                }
            }
        }
        self.reported.retain(|g, _| last.contains_key(g));
        self.last = last;
    }

    /// Between samples: reads the memory of the instances that may cross
    /// their limit, and reports (and stops looking at) those that did.
    pub fn look_closer(&mut self, page_size: u64, trouble: &mpsc::UnboundedSender<Trouble>) {
        self.follow_successors();
        let close = std::mem::take(&mut self.close);
        for limited in close {
            let used = resident(&procfs::descendants(limited.pid), page_size);
            // Gone (0 bytes): the next sample sees what replaced it.
            if used > 0 && !self.report(&limited, used, trouble) {
                self.close.push(limited);
            }
        }
    }

    /// Looks closely from now on at the processes that replaced the ones
    /// reported over their limit, those that run already.
    fn follow_successors(&mut self) {
        let mut waiting = Vec::new();
        for replaced in std::mem::take(&mut self.replaced) {
            let view = replaced.app.view();
            let successor = view.instances.iter().find(|i| {
                i.slot == replaced.slot
                    && i.generation > replaced.generation
                    && i.status == Status::Online
            });
            match successor.and_then(|i| Some((i.generation, i.pid?))) {
                Some((generation, pid)) => self.close.push(Limited {
                    app: replaced.app.name.clone(),
                    generation,
                    pid,
                    limit: replaced.limit,
                }),
                None => waiting.push(replaced),
            }
        }
        self.replaced = waiting;
    }

    /// Reports `limited` if it uses more than its limit and was not
    /// reported lately; whether it did.
    fn report(
        &mut self,
        limited: &Limited,
        used: u64,
        trouble: &mpsc::UnboundedSender<Trouble>,
    ) -> bool {
        let due = self
            .reported
            .get(&limited.generation)
            .is_none_or(|at| at.elapsed() >= REPORT_AGAIN);
        if used <= limited.limit || !due {
            return false;
        }
        self.reported.insert(limited.generation, Instant::now());
        let reason = format!(
            "memory limit {} exceeded: {}",
            size(limited.limit),
            size(used)
        );
        let _ = trouble.send(Trouble {
            app: limited.app.clone(),
            generation: limited.generation,
            reason,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_instance_growing_towards_its_limit_is_looked_at_closer() {
        const M: u64 = 1024 * 1024;
        // (limit, memory at the previous sample, now, looked at closer)
        let table = [
            (150 * M, Some(40 * M), 60 * M, false), // +20M: 100M with the margin
            (150 * M, Some(10 * M), 60 * M, true),  // +50M: 160M with the margin
            (150 * M, Some(100 * M), 140 * M, true),
            (150 * M, Some(140 * M), 140 * M, false), // close, but not growing
            (150 * M, Some(145 * M), 140 * M, false), // shrinking
            (150 * M, None, 40 * M, false),           // started since: 120M with the margin
            (150 * M, None, 60 * M, true),            // started since: 180M
            (150 * M, Some(0), 0, false),
            (u64::MAX, Some(0), u64::MAX / 2, true), // no overflow
        ];
        for (limit, before, now, closer) in table {
            assert_eq!(
                may_cross(limit, before, now),
                closer,
                "{limit} {before:?} {now}"
            );
        }
    }
}
