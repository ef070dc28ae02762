//! Checks on single values, shared by [`crate::load`] and [`crate::AppConfig::validate`].
//!
//! Each check returns a message *without* the key in front, so the caller can
//! prefix `apps[2].kill_signal: ` (a file) or `kill_signal: ` (an ad-hoc app).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use chrono::format::{Item, StrftimeItems};
use croner::parser::{CronParser, Seconds, Year};

/// Signal names accepted for `kill_signal` (Linux; all known to `nix`).
const SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
    "VTALRM", "PROF", "WINCH", "IO", "SYS",
];

/// Checks an app name: the charset of [`crate::valid_name`], and not a word
/// the CLI gives a meaning to.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("must not be empty".into())
    } else if name.len() > crate::MAX_NAME_LEN {
        Err(format!(
            "{} bytes is too long; at most {} (names become log file names)",
            name.len(),
            crate::MAX_NAME_LEN
        ))
    } else if !crate::valid_name(name) {
        Err(format!(
            "{name:?} is not a valid name; use only letters, digits, '.', '_' and '-'"
        ))
    } else if name == "all" {
        Err("\"all\" is reserved (`supctl stop all` means every app)".into())
    } else {
        Ok(())
    }
}

/// Normalizes a signal name: `int`, `INT`, `sigint` and `SIGINT` all give `"SIGINT"`.
pub(crate) fn parse_signal(text: &str) -> Result<String, String> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&bare) {
        Ok(format!("SIG{bare}"))
    } else {
        Err(format!(
            "{text:?} is not a known signal (e.g. SIGINT, SIGTERM, SIGUSR2, SIGHUP, SIGQUIT, SIGKILL)"
        ))
    }
}

/// `instances` as written, before the number of cores is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Instances {
    /// A fixed positive count.
    Count(u32),
    /// `"max"`: one per core.
    Max,
    /// `-1`: one per core but one, at least 1.
    AllButOne,
}

/// What `instances` may be, for error messages.
pub(crate) const INSTANCES_FORMS: &str = "an integer, \"max\" or -1";

impl Instances {
    /// Reads an integer form: a positive count or -1.
    pub(crate) fn from_int(n: i64) -> Result<Instances, String> {
        match n {
            -1 => Ok(Instances::AllButOne),
            n if n >= 1 => check_instance_count(n).map(|()| Instances::Count(n as u32)),
            n => Err(format!(
                "{n} is not allowed; use a positive integer, \"max\" or -1"
            )),
        }
    }

    /// Reads a string form: `"max"`, `"-1"` or a positive count.
    pub(crate) fn from_text(text: &str) -> Result<Instances, String> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("max") {
            return Ok(Instances::Max);
        }
        match trimmed.parse::<i64>() {
            Ok(n) => Instances::from_int(n),
            Err(_) => Err(format!("{text:?} is not {INSTANCES_FORMS}")),
        }
    }

    /// The count on a machine with `cores` cores.
    pub(crate) fn resolve(self, cores: u32) -> u32 {
        match self {
            Instances::Count(n) => n,
            Instances::Max => cores.max(1),
            Instances::AllButOne => cores.saturating_sub(1).max(1),
        }
    }
}

/// Checks a count against [`crate::MAX_INSTANCES`]: more would exhaust the
/// daemon's descriptors (three per instance) and hold its operation lock
/// for minutes.
pub fn check_instance_count(n: i64) -> Result<(), String> {
    if n > i64::from(crate::MAX_INSTANCES) {
        Err(format!(
            "{n} is too many; at most {} instances per app",
            crate::MAX_INSTANCES
        ))
    } else {
        Ok(())
    }
}

/// The number of cores this process may use (at least 1).
pub(crate) fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// Checks `instances` against `max_instances`, quoting the reason when refused.
pub(crate) fn check_instance_cap(
    instances: u32,
    max_instances: Option<u32>,
    reason: Option<&str>,
) -> Result<(), String> {
    match max_instances {
        Some(max) if instances > max => {
            let mut message = format!("{instances} instances exceed max_instances = {max}");
            if let Some(reason) = reason {
                message.push_str(&format!(" ({reason})"));
            }
            Err(message)
        }
        _ => Ok(()),
    }
}

/// Checks a standard 5-field cron expression (nicknames like `@daily` too).
pub(crate) fn check_cron(expr: &str) -> Result<(), String> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map(drop)
        .map_err(|e| format!("{expr:?} is not a valid 5-field cron expression: {e}"))
}

/// Checks a `log_rotate_interval`: see [`crate::rotate_schedule`].
pub(crate) fn check_rotate_schedule(expr: &str) -> Result<(), String> {
    crate::rotate_schedule(expr).map(drop)
}

/// Checks a file path (`out_file`…): not empty, no NUL byte, not ending
/// in `/` (a folder); `NULL` is PM2's name for `/dev/null` (discard).
pub(crate) fn check_file_path(path: &str) -> Result<String, String> {
    if path.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if path.contains('\0') {
        return Err("must not contain a NUL byte".into());
    }
    if path.ends_with('/') {
        return Err(format!("{path:?} names a folder; give a file name"));
    }
    Ok(if path == "NULL" {
        crate::DEV_NULL
    } else {
        path
    }
    .to_owned())
}

/// Checks a chrono strftime format.
pub(crate) fn check_date_format(format: &str) -> Result<(), String> {
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        Err(format!(
            "{format:?} is not a valid strftime format (see chrono's format::strftime)"
        ))
    } else {
        Ok(())
    }
}

/// Whether `name` is a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks an environment variable name, for `instance_var` and `env` keys.
pub(crate) fn check_env_name(name: &str) -> Result<(), String> {
    if valid_env_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ))
    }
}

/// Compiles one `ignore_watch` pattern the way the daemon matches it: a
/// glob (`*`, `?`, `[…]`, `{a,b}`, `**`) where `*` does not cross `/`.
pub(crate) fn glob(pattern: &str) -> Result<globset::Glob, String> {
    if pattern.is_empty() {
        return Err("must not be empty".into());
    }
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("{pattern:?} is not a valid glob pattern: {}", e.kind()))
}

/// Checks one `ignore_watch` pattern.
pub(crate) fn check_glob(pattern: &str) -> Result<(), String> {
    glob(pattern).map(drop)
}

/// Bounds on the new duration keys, and their defaults.
pub(crate) mod bounds {
    use std::time::Duration;

    /// `[daemon] sample_interval`: at least this…
    pub(crate) const SAMPLE_INTERVAL_MIN: Duration = Duration::from_millis(100);
    /// … and at most this.
    pub(crate) const SAMPLE_INTERVAL_MAX: Duration = Duration::from_secs(3600);
    /// `health_interval`: at least this.
    pub(crate) const HEALTH_INTERVAL_MIN: Duration = Duration::from_millis(100);
    /// `health_timeout`: at least this.
    pub(crate) const HEALTH_TIMEOUT_MIN: Duration = Duration::from_millis(10);
    /// `watchdog`: at least this.
    pub(crate) const WATCHDOG_MIN: Duration = Duration::from_millis(100);
    /// `log_max_size`: at least this many bytes (1K).
    pub(crate) const LOG_MAX_SIZE_MIN: u64 = 1024;
}

/// A duration the way people write it: `100ms`, `10s`, `2m`, `1h`.
pub(crate) fn show_duration(d: Duration) -> String {
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{d:?}");
    }
    let ms = d.as_millis();
    match ms {
        0 => "0ms".into(),
        ms if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        ms if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        ms if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// Checks `d` against `min` and, when given, `max`.
pub(crate) fn check_duration_bounds(
    d: Duration,
    min: Duration,
    max: Option<Duration>,
) -> Result<(), String> {
    if d < min {
        Err(format!(
            "{} is too short; the minimum is {}",
            show_duration(d),
            show_duration(min)
        ))
    } else if let Some(max) = max.filter(|&max| d > max) {
        Err(format!(
            "{} is too long; the maximum is {}",
            show_duration(d),
            show_duration(max)
        ))
    } else {
        Ok(())
    }
}

/// Checks `log_max_size`: at least 1K, so a rotation keeps whole lines.
pub(crate) fn check_log_size(bytes: u64) -> Result<(), String> {
    if bytes < bounds::LOG_MAX_SIZE_MIN {
        Err(format!(
            "{bytes} bytes is too small; the minimum is 1K (1024 bytes)"
        ))
    } else {
        Ok(())
    }
}

/// Parses the `metrics` address: an IP address and a port, `127.0.0.1:9615`
/// or `[::1]:9615` (host names are not resolved; port 0 is refused).
pub(crate) fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not an address; write IP:PORT, e.g. \"127.0.0.1:9615\" or \"[::1]:9615\" (host names are not resolved)"
        )
    })?;
    if addr.port() == 0 {
        return Err(format!(
            "{text:?}: port 0 is not allowed (the endpoint needs a known port)"
        ));
    }
    Ok(addr)
}

/// Parses a `host` (where a daemon-held port listens): an IPv4 or IPv6
/// address, or `localhost`, which is 127.0.0.1.
///
/// `localhost` is one address because a slot has one socket (fd 3,
/// `LISTEN_FDS=1`); IPv4's loopback is there even where IPv6 is off, and a
/// client that tries `::1` first falls back to it (happy eyeballs). Other
/// names are refused, not resolved: what a name resolves to may change
/// after the port is bound.
pub(crate) fn parse_host(text: &str) -> Result<IpAddr, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("must not be empty; {HOST_FORMS}"));
    }
    if text.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let ip: IpAddr = text.parse().map_err(|_| {
        format!("{text:?} is not an IP address; {HOST_FORMS} (host names are not resolved)")
    })?;
    check_host(ip).map(|()| ip)
}

/// Checks a `host` address, parsed or received over the wire: a multicast
/// address can never accept a connection.
pub(crate) fn check_host(ip: IpAddr) -> Result<(), String> {
    if ip.is_multicast() {
        return Err(format!(
            "{ip} is a multicast address, where no TCP port can listen; {HOST_FORMS}"
        ));
    }
    Ok(())
}

/// The forms a `host` may take, for its messages.
const HOST_FORMS: &str =
    "write an IPv4 or IPv6 address such as \"127.0.0.1\" or \"::1\", or \"localhost\"";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["api", "api-gateway", "a.b_c-1", "ALL"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a/b", "a b", "é", "all", ".", ".."] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let longest = "a".repeat(crate::MAX_NAME_LEN);
        assert_eq!(check_name(&longest), Ok(()));
        let err = check_name(&format!("{longest}a")).unwrap_err();
        assert!(err.contains("at most 128"), "{err}");
    }

    #[test]
    fn signals() {
        for (text, want) in [
            ("SIGINT", "SIGINT"),
            ("sigterm", "SIGTERM"),
            ("USR2", "SIGUSR2"),
            ("hup", "SIGHUP"),
            ("SigQuit", "SIGQUIT"),
            ("KILL", "SIGKILL"),
        ] {
            assert_eq!(parse_signal(text).as_deref(), Ok(want));
        }
        for bad in ["", "SIG", "SIGFOO", "15", "SIGSIGINT"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instances() {
        assert_eq!(Instances::from_int(4), Ok(Instances::Count(4)));
        assert_eq!(Instances::from_int(-1), Ok(Instances::AllButOne));
        assert!(Instances::from_int(0).is_err());
        assert!(Instances::from_int(-2).is_err());
        assert!(Instances::from_int(i64::MAX).is_err());
        assert_eq!(Instances::from_int(1024), Ok(Instances::Count(1024)));
        let err = Instances::from_int(1025).unwrap_err();
        assert!(err.contains("at most 1024 instances"), "{err}");
        assert!(Instances::from_text("100000").is_err());
        assert_eq!(Instances::from_text("MAX"), Ok(Instances::Max));
        assert_eq!(Instances::from_text("3"), Ok(Instances::Count(3)));
        assert!(Instances::from_text("many").is_err());
        assert_eq!(Instances::Max.resolve(8), 8);
        assert_eq!(Instances::AllButOne.resolve(8), 7);
        assert_eq!(Instances::AllButOne.resolve(1), 1);
        assert_eq!(Instances::Count(3).resolve(8), 3);
    }

    #[test]
    fn instance_cap() {
        assert_eq!(check_instance_cap(1, Some(1), None), Ok(()));
        assert_eq!(check_instance_cap(5, None, None), Ok(()));
        let err = check_instance_cap(2, Some(1), Some("one socket")).unwrap_err();
        assert_eq!(err, "2 instances exceed max_instances = 1 (one socket)");
    }

    #[test]
    fn cron() {
        for ok in ["0 3 * * *", "*/5 * * * *", "0 0 * * MON", "@daily"] {
            assert_eq!(check_cron(ok), Ok(()), "{ok}");
        }
        for bad in ["", "0 3 * *", "0 0 3 * * *", "61 * * * *", "every day"] {
            assert!(check_cron(bad).is_err(), "{bad}");
        }
        // Rotation also takes pm2-logrotate's optional seconds field.
        for ok in ["0 0 * * *", "*/30 * * * * *", "@hourly"] {
            assert_eq!(check_rotate_schedule(ok), Ok(()), "{ok}");
        }
        for bad in ["", "0 0 3 * * * *", "61 * * * *"] {
            assert!(check_rotate_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn date_formats() {
        assert_eq!(check_date_format("%Y-%m-%d %H:%M:%S%.3f"), Ok(()));
        assert!(check_date_format("%Y-%").is_err());
        assert!(check_date_format("%Q").is_err());
    }

    #[test]
    fn duration_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(show_duration(ms(0)), "0ms");
        assert_eq!(show_duration(ms(100)), "100ms");
        assert_eq!(show_duration(ms(1500)), "1500ms");
        assert_eq!(show_duration(ms(10_000)), "10s");
        assert_eq!(show_duration(ms(120_000)), "2m");
        assert_eq!(show_duration(ms(7_200_000)), "2h");
        assert_eq!(show_duration(Duration::from_micros(50)), "50µs");
        assert_eq!(
            check_duration_bounds(ms(100), ms(100), Some(ms(200))),
            Ok(())
        );
        assert_eq!(
            check_duration_bounds(ms(200), ms(100), Some(ms(200))),
            Ok(())
        );
        assert_eq!(
            check_duration_bounds(ms(50), ms(100), None),
            Err("50ms is too short; the minimum is 100ms".into())
        );
        assert_eq!(
            check_duration_bounds(ms(7_200_000), ms(100), Some(ms(3_600_000))),
            Err("2h is too long; the maximum is 1h".into())
        );
    }

    #[test]
    fn log_sizes() {
        assert_eq!(check_log_size(1024), Ok(()));
        assert!(check_log_size(1023).is_err());
        assert!(check_log_size(0).is_err());
    }

    #[test]
    fn hosts() {
        let v4 = |a, b, c, d| Ok(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
        #[rustfmt::skip]
        let accepted: &[(&str, Result<IpAddr, String>)] = &[
            ("127.0.0.1", v4(127, 0, 0, 1)),
            ("localhost", v4(127, 0, 0, 1)),
            ("LocalHost", v4(127, 0, 0, 1)),
            (" 10.0.0.7 ", v4(10, 0, 0, 7)),
            ("0.0.0.0", v4(0, 0, 0, 0)),
            ("::1", Ok(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST))),
            ("::", Ok(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))),
            ("fd00::2", Ok("fd00::2".parse().unwrap())),
        ];
        for (text, want) in accepted {
            assert_eq!(&parse_host(text), want, "{text}");
        }
        #[rustfmt::skip]
        let refused: &[(&str, &str)] = &[
            ("", "must not be empty; write an IPv4 or IPv6 address"),
            ("  ", "must not be empty"),
            ("300.1.1.1", "\"300.1.1.1\" is not an IP address; write an IPv4 or IPv6 address such as \"127.0.0.1\" or \"::1\", or \"localhost\" (host names are not resolved)"),
            ("example.com", "\"example.com\" is not an IP address"),
            ("[::1]", "\"[::1]\" is not an IP address"),
            ("127.0.0.1:80", "\"127.0.0.1:80\" is not an IP address"),
            ("fe80::1%eth0", "is not an IP address"),
            ("224.0.0.1", "224.0.0.1 is a multicast address, where no TCP port can listen"),
            ("ff02::1", "ff02::1 is a multicast address"),
        ];
        for (text, want) in refused {
            let err = parse_host(text).expect_err(text);
            assert!(err.starts_with(want) || err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(
            parse_metrics_addr("127.0.0.1:9615"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9615)))
        );
        assert_eq!(parse_metrics_addr("[::1]:9615").map(|a| a.port()), Ok(9615));
        assert_eq!(
            parse_metrics_addr("0.0.0.0:80").map(|a| a.ip().is_unspecified()),
            Ok(true)
        );
        for bad in [
            "",
            "localhost:9615",
            "127.0.0.1",
            ":9615",
            "127.0.0.1:70000",
            "::1:9615",
        ] {
            assert!(
                parse_metrics_addr(bad)
                    .unwrap_err()
                    .contains("not an address"),
                "{bad}"
            );
        }
        assert!(
            parse_metrics_addr("127.0.0.1:0")
                .unwrap_err()
                .contains("port 0")
        );
    }

    #[test]
    fn globs() {
        for ok in [
            "*.log",
            "tmp/**",
            "**/cache",
            "{a,b}.js",
            "/abs/x",
            "node_modules",
        ] {
            assert_eq!(check_glob(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_glob(""), Err("must not be empty".into()));
        for bad in ["[a", "{a", "[z-a]"] {
            assert!(
                check_glob(bad)
                    .unwrap_err()
                    .contains("is not a valid glob pattern"),
                "{bad}"
            );
        }
        let star = glob("*.log").unwrap().compile_matcher();
        assert!(star.is_match("a.log") && !star.is_match("logs/a.log"));
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_", "NODE_ENV", "a1"] {
            assert!(valid_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(!valid_env_name(bad), "{bad}");
        }
    }
}
