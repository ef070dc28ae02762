//! One `[[apps]]` table read key by key into typed, still-unresolved values.
//!
//! We walk the parser's spanned tree (`toml::de::DeTable`) by hand instead of
//! deriving `Deserialize`: serde stops at the first error, and we want every
//! unknown key, wrong type and impossible value of the whole file, each at its
//! own line and column. A value that fails is reported and left out; the
//! file is then rejected, so the default that takes its place is never used.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeTable;

use crate::ExecMode;
use crate::diag::Diag;
use crate::values::{self, Instances, bounds};

mod daemon;
mod value;

pub(crate) use daemon::{DAEMON_KEYS, read_daemon};
use value::Value;
pub(crate) use value::kind;

/// Every key an app may have, besides `env_<name>`, in the reference's
/// order (for "did you mean", and the order `supctl import` writes them in).
pub const APP_KEYS: &[&str] = &[
    "name",
    "script",
    "args",
    "cwd",
    "exec_mode",
    "instances",
    "port",
    "host",
    "wait_ready",
    "listen_timeout",
    "kill_signal",
    "kill_timeout",
    "autorestart",
    "max_restarts",
    "min_uptime",
    "restart_delay",
    "exp_backoff_restart_delay",
    "stop_exit_codes",
    "max_memory_restart",
    "cron_restart",
    "watch",
    "ignore_watch",
    "watch_delay",
    "instance_var",
    "max_instances",
    "max_instances_reason",
    "log_date_format",
    "env",
    "health_check",
    "health_interval",
    "health_timeout",
    "health_retries",
    "watchdog",
    "log_max_size",
    "log_retain",
    "log_compress",
    "log_rotate_interval",
    "merge_logs",
    "out_file",
    "error_file",
    "log_file",
    "pid_file",
];

/// The keys naming a file the daemon writes for the app (its output, its
/// pid), each resolved against the app's `cwd`.
pub(crate) const FILE_KEYS: &[&str] = &["out_file", "error_file", "log_file", "pid_file"];

/// Keys that tune `health_check` and mean nothing without it.
pub(crate) const HEALTH_TUNING: &[&str] = &["health_interval", "health_timeout", "health_retries"];

/// Keys that tune `port` and mean nothing without it.
pub(crate) const PORT_TUNING: &[&str] = &["host"];

/// Keys that tune `watch` and mean nothing without it.
pub(crate) const WATCH_TUNING: &[&str] = &["ignore_watch", "watch_delay"];

/// `watch` as written.
#[derive(Debug)]
pub(crate) enum RawWatch {
    /// `false`.
    Off,
    /// `true`: the app's `cwd`, at the value's span.
    Cwd(Range<usize>),
    /// Paths, relative to the app's `cwd` unless absolute, each with where
    /// it is written (`apps[0].watch[1]`).
    Paths(Vec<(String, Spanned<String>)>),
}

/// An app as written: each field is `None` when absent or invalid.
#[derive(Debug, Default)]
pub(crate) struct RawApp {
    /// Position in the file's `[[apps]]` array.
    pub index: usize,
    /// Where the app's table is, for problems about missing keys.
    pub span: Range<usize>,
    pub name: Option<Spanned<String>>,
    pub script: Option<String>,
    pub args: Option<Vec<String>>,
    pub cwd: Option<String>,
    pub exec_mode: Option<ExecMode>,
    pub instances: Option<Spanned<Instances>>,
    pub port: Option<Spanned<u16>>,
    pub host: Option<IpAddr>,
    pub wait_ready: Option<bool>,
    pub listen_timeout: Option<Duration>,
    pub kill_signal: Option<String>,
    pub kill_timeout: Option<Duration>,
    pub autorestart: Option<bool>,
    pub max_restarts: Option<u32>,
    pub min_uptime: Option<Duration>,
    pub restart_delay: Option<Duration>,
    pub exp_backoff_restart_delay: Option<Duration>,
    pub stop_exit_codes: Option<Vec<i32>>,
    pub max_memory_restart: Option<u64>,
    pub cron_restart: Option<String>,
    pub watch: Option<RawWatch>,
    pub ignore_watch: Option<Vec<String>>,
    pub watch_delay: Option<Duration>,
    pub instance_var: Option<String>,
    pub max_instances: Option<u32>,
    pub max_instances_reason: Option<Spanned<String>>,
    pub log_date_format: Option<String>,
    pub health_check: Option<Spanned<String>>,
    pub health_interval: Option<Duration>,
    pub health_timeout: Option<Duration>,
    pub health_retries: Option<u32>,
    pub watchdog: Option<Duration>,
    pub log_max_size: Option<u64>,
    pub log_retain: Option<u32>,
    pub log_compress: Option<bool>,
    pub log_rotate_interval: Option<String>,
    pub merge_logs: Option<bool>,
    /// `out_file`, `error_file`, `log_file`, `pid_file` as written (checked,
    /// `NULL` already `/dev/null`), by key.
    pub files: BTreeMap<&'static str, Spanned<String>>,
    /// Where each key's value is, valid or not, by key (for rules that tie keys together).
    pub spans: BTreeMap<String, Range<usize>>,
    /// The `env` table.
    pub env: BTreeMap<String, String>,
    /// The `env_<name>` tables, by `<name>`.
    pub env_sets: BTreeMap<String, BTreeMap<String, String>>,
}

impl RawApp {
    /// Reads `apps[index]`, reporting every problem with its keys and values.
    pub(crate) fn read(
        index: usize,
        span: Range<usize>,
        table: &DeTable<'_>,
        diag: &mut Diag<'_>,
    ) -> RawApp {
        let mut app = RawApp {
            index,
            span,
            ..RawApp::default()
        };
        for (key, value) in table.iter() {
            let key_name: &str = key.get_ref();
            app.spans.insert(key_name.to_owned(), value.span());
            let mut v = Value {
                diag: &mut *diag,
                path: format!("apps[{index}].{key_name}"),
                value,
            };
            match key_name {
                "name" => app.name = v.checked(|s| values::check_name(s).map(|()| s.to_owned())),
                "script" => app.script = v.script(),
                "args" => app.args = v.args(),
                "cwd" => app.cwd = v.string(),
                "exec_mode" => app.exec_mode = v.exec_mode(),
                "instances" => app.instances = v.instances(),
                "port" => app.port = v.port(),
                "host" => app.host = v.host(),
                "wait_ready" => app.wait_ready = v.boolean(),
                "listen_timeout" => app.listen_timeout = v.duration(),
                "kill_signal" => {
                    app.kill_signal = v.checked(values::parse_signal).map(Spanned::into_inner)
                }
                "kill_timeout" => app.kill_timeout = v.duration(),
                "autorestart" => app.autorestart = v.boolean(),
                "max_restarts" => app.max_restarts = v.count(0),
                "min_uptime" => app.min_uptime = v.duration(),
                "restart_delay" => app.restart_delay = v.duration(),
                "exp_backoff_restart_delay" => app.exp_backoff_restart_delay = v.backoff(),
                "stop_exit_codes" => app.stop_exit_codes = v.exit_codes(),
                "max_memory_restart" => app.max_memory_restart = v.memory(),
                "cron_restart" => app.cron_restart = v.checked_string(values::check_cron),
                "watch" => app.watch = v.watch(),
                "ignore_watch" => app.ignore_watch = v.globs(),
                "watch_delay" => app.watch_delay = v.duration(),
                "instance_var" => app.instance_var = v.checked_string(values::check_env_name),
                "max_instances" => app.max_instances = v.count(1),
                "max_instances_reason" => {
                    app.max_instances_reason = v.checked(|s| Ok(s.to_owned()))
                }
                "log_date_format" => {
                    app.log_date_format = v.checked_string(values::check_date_format)
                }
                "health_check" => {
                    // `{port}` is checked against `port` once every key is read.
                    app.health_check =
                        v.checked(|s| crate::health::parse(s, Some(80)).map(|_| s.to_owned()))
                }
                "health_interval" => {
                    app.health_interval = v.duration_within(bounds::HEALTH_INTERVAL_MIN, None)
                }
                "health_timeout" => {
                    app.health_timeout = v.duration_within(bounds::HEALTH_TIMEOUT_MIN, None)
                }
                "health_retries" => app.health_retries = v.count(1),
                "watchdog" => app.watchdog = v.duration_within(bounds::WATCHDOG_MIN, None),
                "log_max_size" => app.log_max_size = v.log_size(),
                "log_retain" => app.log_retain = v.count(1),
                "log_compress" => app.log_compress = v.boolean(),
                "log_rotate_interval" => {
                    app.log_rotate_interval = v.checked_string(values::check_rotate_schedule)
                }
                "merge_logs" => app.merge_logs = v.boolean(),
                "out_file" | "error_file" | "log_file" | "pid_file" => {
                    if let Some(path) = v.checked(values::check_file_path) {
                        let key = FILE_KEYS.iter().find(|k| **k == key_name);
                        app.files.insert(key.copied().unwrap_or_default(), path);
                    }
                }
                "env" => app.env = v.env().unwrap_or_default(),
                _ => match key_name.strip_prefix("env_") {
                    Some(set) if !set.is_empty() => {
                        if let Some(env) = v.env() {
                            app.env_sets.insert(set.to_owned(), env);
                        }
                    }
                    _ => diag.at(
                        key.span(),
                        unknown_key(
                            &format!("apps[{index}]"),
                            key_name,
                            APP_KEYS,
                            DAEMON_KEYS,
                            "[daemon]",
                        ),
                    ),
                },
            }
        }
        for required in ["name", "script"] {
            if !table.iter().any(|(key, _)| key.get_ref() == required) {
                diag.at(
                    app.span.clone(),
                    format!("apps[{index}]: missing required key {required:?}"),
                );
            }
        }
        app
    }
}

/// `apps[2]: unknown key "instnces" (did you mean "instances"?)`: `known`
/// are the keys of this table; a key of `other` (the keys of the `elsewhere`
/// table) is pointed there.
pub(crate) fn unknown_key(
    at: &str,
    key: &str,
    known: &[&'static str],
    other: &[&'static str],
    elsewhere: &str,
) -> String {
    let mut message = format!("{at}: unknown key {key:?}");
    if key == "env_" && known.contains(&"env") {
        message.push_str(" (an env_<name> table needs a name, e.g. env_production)");
    } else if other.contains(&key) {
        message.push_str(&format!(" (it belongs in {elsewhere})"));
    } else if let Some(near) = suggest(key, known) {
        message.push_str(&format!(" (did you mean {near:?}?)"));
    }
    message
}

/// The key of `known` closest to `key`, if it is close enough to be a typo.
pub(crate) fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|&known| (edit_distance(&key, known), known))
        .filter(|&(distance, known)| distance <= 2.max(known.len() / 4))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("instnces", APP_KEYS), Some("instances"));
        assert_eq!(suggest("kill_timout", APP_KEYS), Some("kill_timeout"));
        assert_eq!(suggest("Name", APP_KEYS), Some("name"));
        assert_eq!(suggest("interpreter", APP_KEYS), None);
        assert_eq!(suggest("watch_dealy", APP_KEYS), Some("watch_delay"));
        assert_eq!(suggest("ignore_watches", APP_KEYS), Some("ignore_watch"));
        assert_eq!(suggest("exec_interpreter", APP_KEYS), None);
        assert_eq!(suggest("healthcheck", APP_KEYS), Some("health_check"));
        assert_eq!(suggest("health_chek", APP_KEYS), Some("health_check"));
        assert_eq!(
            suggest("health_intervall", APP_KEYS),
            Some("health_interval")
        );
        assert_eq!(suggest("watchdg", APP_KEYS), Some("watchdog"));
        assert_eq!(suggest("merge_log", APP_KEYS), Some("merge_logs"));
        assert_eq!(suggest("log_rotate", APP_KEYS), None);
        assert_eq!(suggest("log_retian", APP_KEYS), Some("log_retain"));
        assert_eq!(suggest("log_compression", APP_KEYS), Some("log_compress"));
        assert_eq!(
            suggest("rotate_interval", APP_KEYS),
            Some("log_rotate_interval")
        );
        assert_eq!(
            suggest("sample_intervall", DAEMON_KEYS),
            Some("sample_interval")
        );
        assert_eq!(suggest("metric", DAEMON_KEYS), Some("metrics"));
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
