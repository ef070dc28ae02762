//! device-service's port pool: an in-memory set of allocated (ADB, WebRTC)
//! pairs.
//!
//! This is the state that made device-service unsafe to cluster: two
//! processes each hold their own set, both hand out 5555, and Docker refuses
//! the second container. Hence `max_instances = 1` in the ecosystem file.

use std::collections::BTreeSet;

/// One device's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPair {
    /// The ADB port (5555 upward by default).
    pub adb: u16,
    /// The WebRTC port (8080 upward by default).
    pub webrtc: u16,
}

/// Allocates port pairs by slot: slot `i` is `(adb_start + i, webrtc_start + i)`,
/// and every allocation takes the lowest free slot, so a released pair is
/// the next one handed out.
#[derive(Debug, Clone)]
pub struct PortPool {
    /// First ADB port.
    adb_start: u16,
    /// First WebRTC port.
    webrtc_start: u16,
    /// How many slots exist (both ranges stay within 1..=65535).
    capacity: u16,
    /// Slots in use.
    used: BTreeSet<u16>,
}

impl PortPool {
    /// A pool of at most `max` pairs, fewer if a range would pass 65535.
    pub fn new(adb_start: u16, webrtc_start: u16, max: u16) -> Self {
        let room = u16::MAX - adb_start.max(webrtc_start);
        Self {
            adb_start,
            webrtc_start,
            capacity: max.min(room.saturating_add(1)),
            used: BTreeSet::new(),
        }
    }

    /// The lowest free pair, now allocated; `None` when the pool is full.
    pub fn allocate(&mut self) -> Option<PortPair> {
        let slot = (0..self.capacity).find(|slot| !self.used.contains(slot))?;
        self.used.insert(slot);
        Some(self.pair(slot))
    }

    /// Gives `pair` back; `false` if it was not allocated from this pool.
    pub fn release(&mut self, pair: PortPair) -> bool {
        let Some(slot) = pair.adb.checked_sub(self.adb_start) else {
            return false;
        };
        self.pair(slot) == pair && self.used.remove(&slot)
    }

    /// How many pairs are allocated.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    /// The pair of `slot`.
    fn pair(&self, slot: u16) -> PortPair {
        PortPair {
            adb: self.adb_start + slot,
            webrtc: self.webrtc_start + slot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_distinct_and_lowest_first() {
        let mut pool = PortPool::new(5555, 8080, 100);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert_eq!(
            a,
            PortPair {
                adb: 5555,
                webrtc: 8080
            }
        );
        assert_eq!(
            b,
            PortPair {
                adb: 5556,
                webrtc: 8081
            }
        );
        assert!(pool.release(a));
        assert!(!pool.release(a), "released twice");
        assert_eq!(pool.allocate().unwrap(), a, "a freed pair is reused first");
        assert_eq!(pool.in_use(), 2);
    }

    #[test]
    fn a_full_pool_refuses() {
        let mut pool = PortPool::new(65534, 8080, 10);
        assert!(pool.allocate().is_some());
        assert!(pool.allocate().is_some());
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn foreign_pairs_are_not_released() {
        let mut pool = PortPool::new(5555, 8080, 10);
        pool.allocate().unwrap();
        assert!(!pool.release(PortPair {
            adb: 5555,
            webrtc: 9999
        }));
        assert!(!pool.release(PortPair {
            adb: 22,
            webrtc: 8080
        }));
    }
}
