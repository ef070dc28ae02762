//! The control protocol between `supctl` and `supd`.
//!
//! A connection carries frames: a 4-byte big-endian length, then that many
//! bytes of JSON. The client sends a [`Request`], the daemon answers with one
//! [`Response`]. [`frame`] holds the framing (blocking for the CLI, async for
//! the daemon); [`message`] holds the types; [`home`] and [`log_index`] the
//! files both sides read.

pub mod frame;
pub mod home;
pub mod log_index;
pub mod message;

pub use frame::{FrameError, MAX_FRAME};
pub use home::Home;
pub use message::*;

/// Now, as the protocol carries moments: milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
