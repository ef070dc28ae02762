//! The control socket's budget: how many connections may be open, how many
//! bytes of unfinished requests may be buffered, and how long a request may
//! take to arrive.
//!
//! Every connection costs the daemon a descriptor and every buffered byte
//! costs memory, and any process of the daemon's uid may connect: without a
//! budget, idle connections use up the descriptors apps need (their pipes,
//! their log files) and stalled 16 MiB frames hold hundreds of MiB for good.
//! The rules are pure functions, table-tested below; `connection.rs`
//! applies them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// At most this share (1/N) of the open-files limit goes to connections,
/// so supervising always has descriptors left.
const DESCRIPTOR_SHARE: u64 = 4;
/// Connections open at once, unless `SUPD_CONTROL_MAX_CONNECTIONS` says otherwise.
const DEFAULT_CONNECTIONS: usize = 1024;
/// Bytes buffered across connections, unless `SUPD_CONTROL_MAX_BUFFERED` says otherwise.
const DEFAULT_BUFFERED: usize = 64 << 20;
/// Time for a request to arrive, unless `SUPD_CONTROL_IDLE_TIMEOUT` says otherwise.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// The first allocation for a frame body, and the step it grows by at
/// least. Each connection's first chunk is outside the shared budget (the
/// connection cap bounds their sum), so that clients stalled inside huge
/// frames cannot lock out a small request such as `supctl list`.
pub const CHUNK: usize = 64 << 10;

/// The limits the control socket enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Most connections open at once.
    pub connections: usize,
    /// Most bytes of unfinished requests buffered across all connections
    /// (one connection's frame is capped by the protocol's `MAX_FRAME`).
    pub buffered: usize,
    /// How long a whole request may take to arrive, counted from the end
    /// of the previous answer: an idle client and one stalled mid-frame are
    /// both closed after it.
    pub idle: Duration,
}

impl Limits {
    /// The limits from the environment, the connection cap bounded by the
    /// daemon's open-files limit; an error names the bad variable.
    pub fn from_env() -> Result<Limits, String> {
        let open_files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        Limits::parse(|name| std::env::var(name).ok(), open_files)
    }

    /// The limits from variables looked up with `var`.
    fn parse(var: impl Fn(&str) -> Option<String>, open_files: u64) -> Result<Limits, String> {
        let read = |name: &str, parse: fn(&str) -> Result<u64, String>| {
            var(name)
                .map(|text| {
                    parse(&text)
                        .and_then(|v| {
                            if v == 0 {
                                Err("must be above 0".into())
                            } else {
                                Ok(v)
                            }
                        })
                        .map_err(|e| format!("{name}={text:?}: {e}"))
                })
                .transpose()
        };
        let count = |t: &str| t.trim().parse::<u64>().map_err(|e| e.to_string());
        let idle_ms = |t: &str| supd_config::parse_duration(t).map(|d| d.as_millis() as u64);
        let connections = read("SUPD_CONTROL_MAX_CONNECTIONS", count)?
            .map_or(DEFAULT_CONNECTIONS, |v| v as usize);
        Ok(Limits {
            connections: connection_cap(connections, open_files),
            buffered: read("SUPD_CONTROL_MAX_BUFFERED", supd_config::parse_size)?
                .map_or(DEFAULT_BUFFERED, |v| v as usize),
            idle: read("SUPD_CONTROL_IDLE_TIMEOUT", idle_ms)?
                .map_or(DEFAULT_IDLE, Duration::from_millis),
        })
    }
}

/// The connection cap: what was asked, but never more than a quarter of
/// the open-files limit, and at least one.
pub fn connection_cap(asked: usize, open_files: u64) -> usize {
    let share = usize::try_from(open_files / DESCRIPTOR_SHARE).unwrap_or(usize::MAX);
    asked.min(share).max(1)
}

/// What to do with a new connection.
#[derive(Debug, PartialEq)]
pub enum Admission<Id> {
    /// There is room.
    Admit,
    /// The cap is reached: close this quiet connection to make room.
    Evict(Id),
    /// The cap is reached and every connection is running a request.
    Refuse,
}

/// Whether a new connection gets in, with `open` connections of `limit`
/// and `quietest` the open connection (not running a request) that has
/// sent nothing for longest. A hoard of idle connections cannot lock
/// `supctl` out: the oldest gives way.
pub fn admit<Id>(open: usize, limit: usize, quietest: Option<Id>) -> Admission<Id> {
    match quietest {
        _ if open < limit => Admission::Admit,
        Some(id) => Admission::Evict(id),
        None => Admission::Refuse,
    }
}

/// The connection to evict: of `(id, running a request, last heard)`, the
/// one not running a request heard from longest ago.
pub fn quietest<Id, T: Ord>(peers: impl IntoIterator<Item = (Id, bool, T)>) -> Option<Id> {
    peers
        .into_iter()
        .filter(|(_, busy, _)| !busy)
        .min_by(|a, b| a.2.cmp(&b.2))
        .map(|(id, _, _)| id)
}

/// The capacity a frame body of `len` bytes grows to from `capacity`: as
/// bytes arrive, doubling from one chunk, never past the announced length.
pub fn next_capacity(capacity: usize, len: usize) -> usize {
    len.min(capacity.saturating_mul(2).max(CHUNK))
}

/// The bytes of budget that growing a frame buffer from `from` to `to`
/// capacity takes: what lies beyond the free first [`CHUNK`].
pub fn chargeable(from: usize, to: usize) -> usize {
    to.saturating_sub(from.max(CHUNK))
}

/// The refusal a client sees when the connection cap is reached.
pub fn too_many_connections(open: usize, limit: usize) -> String {
    format!(
        "the daemon is busy: {open} connections open (limit {limit}, SUPD_CONTROL_MAX_CONNECTIONS); try again"
    )
}

/// Bytes of unfinished requests buffered across every connection, against
/// the total limit. Each connection's [`Charge`] takes and gives back.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// An empty budget of `limit` bytes.
    pub fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` if they fit; otherwise the refusal, with the figures.
    fn take(&self, bytes: usize) -> Result<(), String> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                fits(used, bytes, self.limit).then_some(used + bytes)
            })
            .map(drop)
            .map_err(|used| {
                format!(
                    "the daemon is busy: {used} bytes of requests buffered, {bytes} more do not fit (limit {}, SUPD_CONTROL_MAX_BUFFERED); try again",
                    self.limit
                )
            })
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Whether `more` bytes fit in a budget of `limit` of which `used` are taken.
fn fits(used: usize, more: usize, limit: usize) -> bool {
    used.checked_add(more).is_some_and(|total| total <= limit)
}

/// What one connection holds of the [`Budget`]; given back when dropped.
#[derive(Debug)]
pub struct Charge<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl<'a> Charge<'a> {
    /// Holds nothing yet.
    pub fn new(budget: &'a Budget) -> Charge<'a> {
        Charge { budget, bytes: 0 }
    }

    /// Holds `bytes` more, if the budget has them.
    pub fn grow(&mut self, bytes: usize) -> Result<(), String> {
        self.budget.take(bytes)?;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_keeps_three_quarters_of_the_descriptors() {
        for (asked, open_files, cap) in [
            (1024, 1_048_576, 1024),
            (1024, 4096, 1024),
            (1024, 1024, 256),
            (10, 1024, 10),
            (1024, 2, 1),
            (0, 1024, 1),
        ] {
            assert_eq!(
                connection_cap(asked, open_files),
                cap,
                "{asked} {open_files}"
            );
        }
    }

    #[test]
    fn admission_evicts_the_quietest_or_refuses() {
        for (open, limit, quietest, expected) in [
            (0, 10, None, Admission::Admit),
            (9, 10, Some(3), Admission::Admit),
            (10, 10, Some(3), Admission::Evict(3)),
            (11, 10, Some(4), Admission::Evict(4)),
            (10, 10, None, Admission::Refuse),
        ] {
            assert_eq!(admit(open, limit, quietest), expected, "{open}/{limit}");
        }
    }

    #[test]
    fn the_quietest_is_the_longest_silent_not_running_a_request() {
        let peers = [
            (1, false, 30),
            (2, true, 10),
            (3, false, 20),
            (4, false, 40),
        ];
        assert_eq!(quietest(peers), Some(3));
        assert_eq!(quietest([(1, true, 1), (2, true, 2)]), None);
        assert_eq!(quietest(Vec::<(u8, bool, u8)>::new()), None);
    }

    #[test]
    fn a_body_grows_by_doubling_up_to_its_length() {
        for (capacity, len, next) in [
            (0, 10, 10),
            (0, 1 << 20, CHUNK),
            (CHUNK, 1 << 20, 2 * CHUNK),
            (512 << 10, 1 << 20, 1 << 20),
            (768 << 10, 1 << 20, 1 << 20),
        ] {
            assert_eq!(next_capacity(capacity, len), next, "{capacity} {len}");
        }
    }

    #[test]
    fn the_first_chunk_of_a_frame_is_free() {
        for (from, to, charged) in [
            (0, 14, 0),
            (0, CHUNK, 0),
            (CHUNK, 2 * CHUNK, CHUNK),
            (2 * CHUNK, 4 * CHUNK, 2 * CHUNK),
        ] {
            assert_eq!(chargeable(from, to), charged, "{from} -> {to}");
        }
    }

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_takes_back_on_drop() {
        for (used, more, limit, ok) in [
            (0, 10, 10, true),
            (5, 6, 10, false),
            (10, 0, 10, true),
            (usize::MAX, 1, usize::MAX, false),
        ] {
            assert_eq!(fits(used, more, limit), ok, "{used}+{more} of {limit}");
        }
        let budget = Budget::new(100);
        let mut a = Charge::new(&budget);
        a.grow(60).unwrap();
        let mut b = Charge::new(&budget);
        let refusal = b.grow(50).unwrap_err();
        assert!(
            refusal.contains("60 bytes") && refusal.contains("limit 100"),
            "{refusal}"
        );
        drop(a);
        b.grow(100).unwrap();
    }

    #[test]
    fn limits_come_from_the_environment_and_bad_values_are_named() {
        let none = Limits::parse(|_| None, 1_048_576).unwrap();
        assert_eq!(none.connections, DEFAULT_CONNECTIONS);
        assert_eq!(none.buffered, DEFAULT_BUFFERED);
        assert_eq!(none.idle, DEFAULT_IDLE);
        let set = |name: &str| {
            Some(match name {
                "SUPD_CONTROL_MAX_CONNECTIONS" => "50".into(),
                "SUPD_CONTROL_MAX_BUFFERED" => "8M".into(),
                _ => "500ms".into(),
            })
        };
        let limits = Limits::parse(set, 1_048_576).unwrap();
        assert_eq!(
            limits,
            Limits {
                connections: 50,
                buffered: 8 << 20,
                idle: Duration::from_millis(500)
            }
        );
        for bad in ["SUPD_CONTROL_MAX_CONNECTIONS", "SUPD_CONTROL_IDLE_TIMEOUT"] {
            let err = Limits::parse(|n| (n == bad).then(|| "0".into()), 1024).unwrap_err();
            assert!(err.starts_with(bad), "{err}");
        }
        let err = Limits::parse(|_| Some("lots".into()), 1024).unwrap_err();
        assert!(err.contains("lots"), "{err}");
    }
}
