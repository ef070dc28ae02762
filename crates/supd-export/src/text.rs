//! Durations and sizes as each format writes them, exact where the format
//! allows it (`1600ms`, `1Gi`), rounded up where it only takes whole seconds
//! (a grace period is never shortened).

use std::time::Duration;

/// `5s` when whole seconds, else `1600ms`: what systemd and Compose read.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Whole seconds, rounded up, at least `min` (Kubernetes' `*Seconds` fields).
pub fn seconds(d: Duration, min: u64) -> u64 {
    d.as_millis().div_ceil(1000).max(u128::from(min)) as u64
}

/// A byte count in the largest power-of-1024 unit that keeps it exact, with
/// the unit names of a format: `units` are the names of K, M and G.
pub fn size(bytes: u64, units: [&str; 3]) -> String {
    let [k, m, g] = units;
    for (shift, unit) in [(30, g), (20, m), (10, k)] {
        let step = 1u64 << shift;
        if bytes >= step && bytes.is_multiple_of(step) {
            return format!("{}{unit}", bytes / step);
        }
    }
    bytes.to_string()
}

/// Kubernetes' binary quantity suffixes.
pub const KUBERNETES_UNITS: [&str; 3] = ["Ki", "Mi", "Gi"];
/// systemd's (base 1024).
pub const SYSTEMD_UNITS: [&str; 3] = ["K", "M", "G"];
/// Compose's byte units.
pub const COMPOSE_UNITS: [&str; 3] = ["k", "m", "g"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (ms, text, secs) in [
            (5000, "5s", 5),
            (1600, "1600ms", 2),
            (0, "0s", 0),
            (100, "100ms", 1),
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(duration(d), text);
            assert_eq!(seconds(d, 0), secs, "{ms}");
        }
        assert_eq!(seconds(Duration::ZERO, 1), 1);
    }

    #[test]
    fn sizes() {
        for (bytes, kubernetes, systemd) in [
            (1 << 30, "1Gi", "1G"),
            (300 << 20, "300Mi", "300M"),
            (1536 << 20, "1536Mi", "1536M"),
            (2048, "2Ki", "2K"),
            (1000, "1000", "1000"),
            (1025, "1025", "1025"),
        ] {
            assert_eq!(size(bytes, KUBERNETES_UNITS), kubernetes);
            assert_eq!(size(bytes, SYSTEMD_UNITS), systemd);
        }
    }
}
