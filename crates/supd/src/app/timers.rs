//! One timer queue per actor (as mini-redis's `db.rs` expires keys): the
//! deadlines in a sorted map and one `sleep_until` in the actor's loop,
//! rather than a detached task per timer.
//!
//! A timer is never cancelled: each names its process by generation, and
//! one that fires after its process moved on finds no record, or a state
//! with no rule for it, and changes nothing.

use std::collections::BTreeMap;
use std::time::Instant;

/// Deadlines and what is due at each, in order (ties in arming order).
pub struct Timers<T> {
    queue: BTreeMap<(Instant, u64), T>,
    armed: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            queue: BTreeMap::new(),
            armed: 0,
        }
    }
}

impl<T> Timers<T> {
    /// `what` is due at `at`.
    pub fn arm(&mut self, at: Instant, what: T) {
        self.armed += 1;
        self.queue.insert((at, self.armed), what);
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next(&self) -> Option<Instant> {
        self.queue.keys().next().map(|&(at, _)| at)
    }

    /// Takes every timer due at `now`, earliest first.
    pub fn due(&mut self, now: Instant) -> Vec<T> {
        let mut due = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_come_due_in_deadline_order_then_arming_order() {
        let now = Instant::now();
        let ms = |n| now + Duration::from_millis(n);
        let mut timers = Timers::default();
        for (at, what) in [(ms(30), "c"), (ms(10), "a"), (ms(20), "b1"), (ms(20), "b2")] {
            timers.arm(at, what);
        }
        assert_eq!(timers.next(), Some(ms(10)));
        assert_eq!(timers.due(ms(5)), Vec::<&str>::new());
        assert_eq!(timers.due(ms(20)), ["a", "b1", "b2"]);
        assert_eq!(timers.next(), Some(ms(30)));
        assert_eq!(timers.due(ms(100)), ["c"]);
        assert_eq!(timers.next(), None);
    }
}
