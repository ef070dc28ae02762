//! One `[[apps]]` table read key by key into typed, still-unresolved values.
//!
//! We walk the parser's spanned tree (`toml::de::DeTable`) by hand instead of
//! deriving `Deserialize`: serde stops at the first error, and we want every
//! unknown key, wrong type and impossible value of the whole file, each at its
//! own line and column. A value that fails is reported and left out; the
//! file is then rejected, so the default that takes its place is never used.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeTable;

use crate::ExecMode;
use crate::diag::Diag;
use crate::values::{self, Instances};

mod value;

use value::Value;
pub(crate) use value::kind;

/// Every key an app may have, besides `env_<name>` (for "did you mean").
const KEYS: &[&str] = &[
    "name",
    "script",
    "args",
    "cwd",
    "exec_mode",
    "instances",
    "port",
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
    "instance_var",
    "max_instances",
    "max_instances_reason",
    "log_date_format",
    "env",
];

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
    pub instance_var: Option<String>,
    pub max_instances: Option<u32>,
    pub max_instances_reason: Option<Spanned<String>>,
    pub log_date_format: Option<String>,
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
                "instance_var" => app.instance_var = v.checked_string(values::check_env_name),
                "max_instances" => app.max_instances = v.count(1),
                "max_instances_reason" => {
                    app.max_instances_reason = v.checked(|s| Ok(s.to_owned()))
                }
                "log_date_format" => {
                    app.log_date_format = v.checked_string(values::check_date_format)
                }
                "env" => app.env = v.env().unwrap_or_default(),
                _ => match key_name.strip_prefix("env_") {
                    Some(set) if !set.is_empty() => {
                        if let Some(env) = v.env() {
                            app.env_sets.insert(set.to_owned(), env);
                        }
                    }
                    _ => diag.at(key.span(), unknown_key(index, key_name)),
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

/// `apps[2]: unknown key "instnces" (did you mean "instances"?)`.
fn unknown_key(index: usize, key: &str) -> String {
    let mut message = format!("apps[{index}]: unknown key {key:?}");
    if key == "env_" {
        message.push_str(" (an env_<name> table needs a name, e.g. env_production)");
    } else if let Some(near) = suggest(key) {
        message.push_str(&format!(" (did you mean {near:?}?)"));
    }
    message
}

/// The known key closest to `key`, if it is close enough to be a typo.
fn suggest(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    KEYS.iter()
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
        assert_eq!(suggest("instnces"), Some("instances"));
        assert_eq!(suggest("kill_timout"), Some("kill_timeout"));
        assert_eq!(suggest("Name"), Some("name"));
        assert_eq!(suggest("watch"), None);
        assert_eq!(suggest("exec_interpreter"), None);
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
