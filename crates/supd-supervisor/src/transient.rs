//! Spawn failures that pass: a process that could not be started for lack
//! of a resource the system gives back (descriptors, disk space, process
//! slots) is retried with a back-off instead of staying `errored` for good.
//! Everything else (no such program, permission denied…) is the user's to
//! fix and stays `errored`.

use std::time::Duration;

/// The first wait before retrying a transient failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two retries: short, as the resource may come
/// back at any moment and a retry costs only a few system calls.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// Whether a spawn that failed with `errno` may succeed later by itself:
/// out of descriptors (ours or the system's), of disk space (a log file),
/// of processes or memory for a fork.
pub fn is_transient(errno: i32) -> bool {
    matches!(
        errno,
        libc::EMFILE | libc::ENFILE | libc::ENOSPC | libc::EAGAIN | libc::ENOMEM
    )
}

/// The wait before retry number `failures + 1`: doubling from
/// [`FIRST_RETRY`], at most [`MAX_RETRY`].
pub fn retry_delay(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.min(16))
        .min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors() {
        for (errno, want) in [
            (libc::EMFILE, true),
            (libc::ENFILE, true),
            (libc::ENOSPC, true),
            (libc::EAGAIN, true),
            (libc::ENOMEM, true),
            (libc::ENOENT, false),
            (libc::EACCES, false),
            (libc::ENOEXEC, false),
            (libc::EINVAL, false),
            (libc::EADDRINUSE, false),
        ] {
            assert_eq!(is_transient(errno), want, "errno {errno}");
        }
    }

    #[test]
    fn retry_delays_double_up_to_the_ceiling() {
        for (failures, ms) in [
            (0, 500),
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (4, 5000),
            (40, 5000),
        ] {
            assert_eq!(
                retry_delay(failures),
                Duration::from_millis(ms),
                "{failures}"
            );
        }
    }
}
