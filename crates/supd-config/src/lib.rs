//! The ecosystem.toml schema: PM2's option names, typed and validated.
//!
//! [`load`] reads a file, checks every key and returns the resolved
//! [`AppConfig`]s (relative paths made absolute, `env` merged with the
//! selected `env_<name>`, `instances` resolved to a number). Every problem is
//! reported as `file:line:column: message`, all of them in one pass.
//!
//! The resolved types are also the wire form: supctl parses the file and
//! sends [`AppConfig`]s to the daemon, so they implement serde both ways.
//!
//! The optional `[daemon]` table becomes [`Ecosystem::daemon`]
//! ([`DaemonConfig`]): the sampling interval, the metrics endpoint and the
//! log rotation defaults of every app.
//!
//! Inside, a file flows through small steps: `loader` (read, parse, top
//! level, what apps must not share, `--only`) → `raw` (one `[[apps]]` table,
//! or the `[daemon]` table, read key by key, with spans) → `resolve`
//! (defaults, paths, `env`, rules that tie keys together). Single values are
//! checked by `units` (durations, sizes), `values` (names, signals,
//! instances, cron, date formats, globs, bounds, addresses) and `health`
//! (`health_check`), which `validate` reuses for ad-hoc apps; `diag` turns
//! byte spans into lines and columns.

// PUBLIC CONTRACT (shared with the daemon and the CLI): keep these names and
// field types; add fields only with a default.

mod diag;
mod health;
mod loader;
mod raw;
mod readiness;

pub use raw::APP_KEYS;
pub use readiness::{NodeProgram, Readiness};
pub use values::check_instance_count;
mod resolve;
#[cfg(test)]
mod tests;
mod units;
mod validate;
mod values;
mod wrapper;

pub use wrapper::Wrapper;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Fork (one process per instance, the default) or cluster (N instances sharing a port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// Independent instances; the default.
    #[default]
    Fork,
    /// Instances share the daemon-owned listening socket.
    Cluster,
}

/// One app, fully resolved and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppConfig {
    /// `[A-Za-z0-9._-]+`.
    pub name: String,
    /// Program to exec: an absolute path, or a bare name looked up in PATH.
    pub script: String,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Absolute working directory (default: the ecosystem file's folder).
    pub cwd: PathBuf,
    /// Fork or cluster.
    pub exec_mode: ExecMode,
    /// Resolved instance count (`"max"` = cores, -1 = cores - 1, at least 1).
    pub instances: u32,
    /// Port the daemon binds and hands over as fd 3.
    pub port: Option<u16>,
    /// The address that port listens on (only with `port`); `None`: every
    /// interface, dual-stack `::` (IPv4 too), or `0.0.0.0` where IPv6 is
    /// off. `localhost` in a file is 127.0.0.1 here.
    #[serde(default)]
    pub host: Option<IpAddr>,
    /// Online only after READY=1 (or `process.send('ready')`).
    pub wait_ready: bool,
    /// Bound on the wait for readiness (default 3 s, as PM2).
    #[serde(with = "duration_ms")]
    pub listen_timeout: Duration,
    /// First signal on stop, e.g. `"SIGINT"` (default); always a valid name.
    pub kill_signal: String,
    /// Grace before SIGKILL to the process group (default 1.6 s, as PM2).
    #[serde(with = "duration_ms")]
    pub kill_timeout: Duration,
    /// Restart when the process exits (default true).
    pub autorestart: bool,
    /// Unstable restarts in a row before `errored` (default 16, as PM2).
    pub max_restarts: u32,
    /// A run shorter than this is unstable (default 1 s).
    #[serde(with = "duration_ms")]
    pub min_uptime: Duration,
    /// Fixed delay before a restart (default 0).
    #[serde(with = "duration_ms")]
    pub restart_delay: Duration,
    /// Initial exponential back-off delay (x1.5 per unstable run, capped at 15 s).
    #[serde(with = "opt_duration_ms")]
    pub exp_backoff_restart_delay: Option<Duration>,
    /// Exit codes that do not trigger a restart.
    pub stop_exit_codes: Vec<i32>,
    /// Restart when the instance's process tree RSS exceeds this many bytes.
    pub max_memory_restart: Option<u64>,
    /// 5-field cron expression for periodic graceful restarts (validated).
    pub cron_restart: Option<String>,
    /// Env var carrying the instance number (default `INSTANCE_ID`).
    pub instance_var: String,
    /// Hard cap on instances (start, scale, reload).
    pub max_instances: Option<u32>,
    /// Shown when the cap refuses something.
    pub max_instances_reason: Option<String>,
    /// chrono strftime format prefixed to every log line (validated).
    pub log_date_format: Option<String>,
    /// `env` with the selected `env_<name>` applied over it.
    pub env: BTreeMap<String, String>,
    /// Health check as written (validated): a URL starting exactly with
    /// `http://`, possibly with `{port}` in it, or else a shell command (for
    /// `sh -c`, taken as is). [`AppConfig::health_probe`] gives the parsed
    /// form with `{port}` replaced.
    #[serde(default)]
    pub health_check: Option<String>,
    /// Time between two health checks of an instance (default 10 s, at least 100 ms).
    #[serde(default = "default_health_interval", with = "duration_ms")]
    pub health_interval: Duration,
    /// Bound on one health check (default 2 s, at least 10 ms).
    #[serde(default = "default_health_timeout", with = "duration_ms")]
    pub health_timeout: Duration,
    /// Failed health checks in a row that make an instance unhealthy (default 3, at least 1).
    #[serde(default = "default_health_retries")]
    pub health_retries: u32,
    /// systemd-style watchdog: the instance must send `WATCHDOG=1` at least
    /// this often once online (at least 100 ms; `None`: no watchdog).
    #[serde(default, with = "opt_duration_ms")]
    pub watchdog: Option<Duration>,
    /// Rotate a log file once it exceeds this many bytes (at least 1024);
    /// `None`: `[daemon] log_max_size` applies.
    #[serde(default)]
    pub log_max_size: Option<u64>,
    /// Rotated files kept per log (at least 1); `None`: `[daemon] log_retain` applies.
    #[serde(default)]
    pub log_retain: Option<u32>,
    /// gzip rotated files; `None`: `[daemon] log_compress` applies.
    #[serde(default)]
    pub log_compress: Option<bool>,
    /// 5-field cron expression for time-based rotation (validated);
    /// `None`: `[daemon] log_rotate_interval` applies.
    #[serde(default)]
    pub log_rotate_interval: Option<String>,
    /// One out and one err file for all instances (default true, as PM2);
    /// false: one pair of files per instance.
    #[serde(default = "default_merge_logs")]
    pub merge_logs: bool,
    /// Where stdout goes (absolute; `None`: `SUPD_HOME/logs/NAME-out.log`).
    /// With `merge_logs = false`, instance N writes `-N` before the `.log`
    /// (see [`AppConfig::instance_file`]).
    #[serde(default)]
    pub out_file: Option<PathBuf>,
    /// Where stderr goes (absolute; `None`: `SUPD_HOME/logs/NAME-err.log`).
    #[serde(default)]
    pub error_file: Option<PathBuf>,
    /// A file that gets every line of both streams as well (absolute;
    /// `None`: no such file).
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// Where each instance's pid is written while it runs: instance N's in
    /// the path with `-N` before the `.pid` (absolute; `None`: no pid file).
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// Absolute paths (folders or files) whose changes restart the app;
    /// empty: not watched. `watch = true` is the app's `cwd`.
    #[serde(default)]
    pub watch: Vec<PathBuf>,
    /// Glob patterns of changes that do not count (validated; see
    /// [`AppConfig::watch_ignore`]); `node_modules`, `.git` and SUPD_HOME
    /// never count.
    #[serde(default)]
    pub ignore_watch: Vec<String>,
    /// Quiet time after a change before the restart: each further change
    /// within it starts it again (default 1 s, as PM2).
    #[serde(default = "default_watch_delay", with = "duration_ms")]
    pub watch_delay: Duration,
    /// Whether `wait_ready` was written (either value) rather than left to
    /// its default: a written `false` turns off the wait a Node app with a
    /// `port` gets by default (see [`AppConfig::readiness`]).
    #[serde(default)]
    pub wait_ready_written: bool,
    /// Whether `port` was learned from the app's first `listen()` rather
    /// than configured: a Node app in cluster mode without a `port` (see
    /// [`AppConfig::learns_port`] and docs/cluster.md, "Zero-config Node
    /// clusters"). A config without a port keeps a learned one.
    #[serde(default)]
    pub port_learned: bool,
}

/// The `[daemon]` table: settings of the daemon itself, and the log rotation
/// defaults of every app (each app may override them).
///
/// Missing keys take their defaults, both in a file and over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonConfig {
    /// How often CPU and memory are sampled (default 1 s; 100 ms to 1 h).
    #[serde(with = "duration_ms")]
    pub sample_interval: Duration,
    /// Where to serve Prometheus metrics (`None`: no endpoint). Any address is
    /// accepted; a non-loopback one exposes the endpoint to the network.
    pub metrics: Option<SocketAddr>,
    /// Default for [`AppConfig::log_max_size`] (`None`: no size-based rotation).
    pub log_max_size: Option<u64>,
    /// Default for [`AppConfig::log_retain`] (default 30, at least 1).
    pub log_retain: u32,
    /// Default for [`AppConfig::log_compress`] (default false).
    pub log_compress: bool,
    /// Default for [`AppConfig::log_rotate_interval`] (`None`: no time-based rotation).
    pub log_rotate_interval: Option<String>,
    /// The keys the file's `[daemon]` table wrote (empty without one): a
    /// setting also given another way (a `supd` flag such as
    /// `--sample-interval`) should yield only to these, not to defaults.
    pub written: BTreeSet<String>,
}

impl Default for DaemonConfig {
    fn default() -> DaemonConfig {
        DaemonConfig {
            sample_interval: Duration::from_secs(1),
            metrics: None,
            log_max_size: None,
            log_retain: 30,
            log_compress: false,
            log_rotate_interval: None,
            written: BTreeSet::new(),
        }
    }
}

impl DaemonConfig {
    /// Whether the file's `[daemon]` table wrote `key` (e.g. `"sample_interval"`).
    pub fn is_written(&self, key: &str) -> bool {
        self.written.contains(key)
    }

    /// Checks the invariants `load` enforces, for a config received over the
    /// wire; the message starts with the offending key.
    pub fn validate(&self) -> Result<(), String> {
        validate::validate_daemon(self)
    }
}

/// A parsed `health_check`, `{port}` replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// `GET path` on `host:port` over plain HTTP.
    Http {
        /// The URL, `{port}` replaced (for messages).
        url: String,
        /// Host name or IP address, without IPv6 brackets.
        host: String,
        /// The URL's port, 80 when it has none.
        port: u16,
        /// Path and query, starting with `/`; never the fragment.
        path: String,
    },
    /// A shell command (for `sh -c`), as written.
    Command(String),
}

impl HealthProbe {
    /// Parses a `health_check` value: a URL when it starts exactly with
    /// `http://`, where `{port}` is replaced by `port` (an error when `port`
    /// is `None`); else a shell command, in which `{port}` is an error (the
    /// command has `$PORT`). `https://`, `HTTP://` and other `scheme://`
    /// forms are errors.
    pub fn parse(text: &str, port: Option<u16>) -> Result<HealthProbe, String> {
        health::parse(text, port)
    }
}

fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_health_retries() -> u32 {
    3
}

fn default_merge_logs() -> bool {
    true
}

fn default_watch_delay() -> Duration {
    Duration::from_millis(1000)
}

/// Everything read from one ecosystem file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ecosystem {
    /// The file the apps came from (absolute).
    pub path: PathBuf,
    /// The apps, in file order, after `--only` filtering.
    pub apps: Vec<AppConfig>,
    /// The `[daemon]` table (all defaults when the file has none).
    #[serde(default)]
    pub daemon: DaemonConfig,
}

/// Choices made on the command line when loading a file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--env NAME`: apply `env_NAME` over `env` (an app without it just gets `env`).
    pub env: Option<String>,
    /// `--only a,b`: keep only these apps; naming an app not in the file is an error.
    pub only: Option<Vec<String>>,
}

/// One problem in a file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when the problem has no location, e.g. an unreadable file).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, naming the key: `apps[1].port: 70000 is out of range (1-65535)`.
    pub message: String,
}

/// Every problem found in a file; Display prints one `file:line:column: message` per line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", display_problems(.problems))]
pub struct ConfigError {
    /// All problems, in file order.
    pub problems: Vec<Problem>,
}

fn display_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            format!(
                "{}:{}:{}: {}",
                p.file.display(),
                p.line,
                p.column,
                p.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads, validates and resolves an ecosystem file.
///
/// Every problem of the file is reported at once, each at its line and column;
/// problems in apps that `--only` leaves out count too (the file must be valid).
pub fn load(path: &std::path::Path, opts: &LoadOptions) -> Result<Ecosystem, ConfigError> {
    loader::load(path, opts)
}

/// Validates and resolves `text`, the contents of the ecosystem file at
/// `path`, as [`load`] does once it has read the file (which need not
/// exist: `path` names it in problems and its folder resolves relative
/// paths). The fuzz target of `tests/fuzz` feeds it arbitrary text.
pub fn load_str(
    text: &str,
    path: &std::path::Path,
    opts: &LoadOptions,
) -> Result<Ecosystem, ConfigError> {
    loader::load_str(text, path, opts)
}

impl AppConfig {
    /// An app with every default, for `supctl start CMD`: `cwd` is the caller's directory.
    ///
    /// The defaults are PM2's: fork mode, 1 instance, SIGINT then SIGKILL after
    /// 1.6 s, autorestart with up to 16 unstable restarts (min_uptime 1 s),
    /// readiness wait bounded at 3 s (`wait_ready` not written, so a Node
    /// app with a port waits until it listens), `INSTANCE_ID`, empty args
    /// and env; no health check (10 s interval, 2 s timeout, 3 retries when one is set),
    /// no watchdog, log rotation from `[daemon]`, merged logs, not watched
    /// (a 1 s `watch_delay` when it is).
    pub fn with_defaults(name: String, script: String, cwd: PathBuf) -> AppConfig {
        AppConfig {
            name,
            script,
            args: Vec::new(),
            cwd,
            exec_mode: ExecMode::Fork,
            instances: 1,
            port: None,
            host: None,
            wait_ready: false,
            listen_timeout: Duration::from_millis(3000),
            kill_signal: "SIGINT".to_owned(),
            kill_timeout: Duration::from_millis(1600),
            autorestart: true,
            max_restarts: 16,
            min_uptime: Duration::from_millis(1000),
            restart_delay: Duration::ZERO,
            exp_backoff_restart_delay: None,
            stop_exit_codes: Vec::new(),
            max_memory_restart: None,
            cron_restart: None,
            instance_var: "INSTANCE_ID".to_owned(),
            max_instances: None,
            max_instances_reason: None,
            log_date_format: None,
            env: BTreeMap::new(),
            health_check: None,
            health_interval: default_health_interval(),
            health_timeout: default_health_timeout(),
            health_retries: default_health_retries(),
            watchdog: None,
            log_max_size: None,
            log_retain: None,
            log_compress: None,
            log_rotate_interval: None,
            merge_logs: default_merge_logs(),
            out_file: None,
            error_file: None,
            log_file: None,
            pid_file: None,
            watch: Vec::new(),
            ignore_watch: Vec::new(),
            watch_delay: default_watch_delay(),
            wait_ready_written: false,
            port_learned: false,
        }
    }

    /// Checks the invariants `load` enforces that also apply to ad-hoc apps
    /// (name charset, instances vs max_instances, port range, health check
    /// and its port, minimum periods, log keys, watched paths absolute and
    /// patterns valid); the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        validate::validate(self)
    }

    /// The `ignore_watch` patterns as one set, compiled as `load` checks
    /// them (`*` does not cross `/`); `tmp/**` also matches `tmp` itself,
    /// as in PM2. An error only for a config that [`AppConfig::validate`]
    /// would refuse.
    pub fn watch_ignore(&self) -> Result<globset::GlobSet, String> {
        let mut set = globset::GlobSetBuilder::new();
        for pattern in &self.ignore_watch {
            set.add(values::glob(pattern)?);
            if let Some(folder) = pattern.strip_suffix("/**").filter(|f| !f.is_empty()) {
                set.add(values::glob(folder)?);
            }
        }
        set.build().map_err(|e| e.to_string())
    }

    /// Instance `instance`'s own file for `path` (PM2's rule): `-N` goes
    /// before the extension `ext` (`api.log` → `api-1.log`), or at the end
    /// when the name does not end in `.ext`; `/dev/null` stays itself.
    pub fn instance_file(path: &std::path::Path, instance: u32, ext: &str) -> PathBuf {
        if path == std::path::Path::new(DEV_NULL) {
            return path.to_path_buf();
        }
        let text = path.as_os_str().to_string_lossy();
        let dotted = format!(".{ext}");
        match text.strip_suffix(&dotted) {
            Some(stem) => PathBuf::from(format!("{stem}-{instance}{dotted}")),
            None => PathBuf::from(format!("{text}-{instance}")),
        }
    }

    /// The health check, parsed, `{port}` replaced by this app's port;
    /// `Ok(None)` when there is none. An error only for a config that
    /// [`AppConfig::validate`] would refuse.
    pub fn health_probe(&self) -> Result<Option<HealthProbe>, String> {
        self.health_check
            .as_deref()
            .map(|text| HealthProbe::parse(text, self.port))
            .transpose()
    }
}

/// Where output written to `NULL` (PM2's word) or `/dev/null` goes: nowhere.
pub const DEV_NULL: &str = "/dev/null";

/// The interpreter PM2 would pick for a script by its extension: `node` for
/// `.js`, `.mjs` and `.cjs`, `python3` for `.py`; `None` for anything else
/// (executed directly).
pub fn interpreter_for(script: &str) -> Option<&'static str> {
    let ext = std::path::Path::new(script).extension()?.to_str()?;
    match ext {
        "js" | "mjs" | "cjs" => Some("node"),
        "py" => Some("python3"),
        _ => None,
    }
}

impl AppConfig {
    /// Runs a `.js` or `.py` script through its interpreter, as PM2 does:
    /// `script = "app.js"` becomes `script = "node"`, `args = ["/abs/app.js", …]`.
    pub fn apply_interpreter(&mut self) {
        if let Some(interpreter) = interpreter_for(&self.script) {
            let script = std::mem::replace(&mut self.script, interpreter.to_string());
            self.args.insert(0, script);
        }
    }
}

/// Parses a duration: an integer is milliseconds, else `500ms`, `10s`, `2m`, `1h`.
/// Parses a `log_rotate_interval`: a cron expression of 5 fields, or 6 with
/// seconds first as pm2-logrotate's `rotateInterval` allows (nicknames like
/// `@daily` too).
pub fn rotate_schedule(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| {
            format!("{expr:?} is not a valid cron expression (5 fields, or 6 with seconds): {e}")
        })
}

/// Fractions (`1.5s`) are accepted; negative or unknown forms are errors.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    units::parse_duration(text)
}

/// Parses a size: an integer is bytes, else `512K`, `150M`, `1G` (powers of 1024).
///
/// Lower case and a trailing `B` are accepted (`150mb`); `0` parses (a
/// caller that needs a positive size checks it).
pub fn parse_size(text: &str) -> Result<u64, String> {
    units::parse_size(text)
}

/// The most instances one app may have, wherever a count comes from (a
/// file, `-i`, `scale`, a state file): each costs the daemon three
/// descriptors, and a typo like `99999` would exhaust them.
pub const MAX_INSTANCES: u32 = 1024;

/// The longest app name, in bytes: names become log file names, and the
/// longest one derived from it (`NAME-error-1023.log.<time>_N.gz.tmp`, about
/// 60 bytes more) must fit in a file name (255 bytes).
pub const MAX_NAME_LEN: usize = 128;

/// Whether `name` is a valid app name: `[A-Za-z0-9._-]+`.
///
/// `.` and `..` are refused too: names become log file names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Normalizes a signal name for `kill_signal` or `supctl signal`: `int`,
/// `SIGINT` and `sigint` all give `"SIGINT"`; unknown names are errors.
pub fn parse_signal(text: &str) -> Result<String, String> {
    values::parse_signal(text)
}

/// Parses a `host` as the file and `--host` take it: an IPv4 or IPv6
/// address, or `localhost` (127.0.0.1: one socket per slot, and IPv4's
/// loopback exists even where IPv6 is off); host names are not resolved.
pub fn parse_host(text: &str) -> Result<IpAddr, String> {
    values::parse_host(text)
}

/// Parses an instance count as `-i` takes it: a positive integer, `max`
/// (one per core) or `-1` (cores - 1, at least 1); 0 is an error.
pub fn parse_instances(text: &str) -> Result<u32, String> {
    values::Instances::from_text(text).map(|i| i.resolve(values::cores()))
}

/// Checks one `ignore_watch` pattern: a glob (`*`, `?`, `[…]`, `{a,b}`,
/// `**`), not empty.
pub fn check_watch_pattern(pattern: &str) -> Result<(), String> {
    values::check_glob(pattern)
}

/// Checks a `cron_restart` expression: 5 fields (nicknames like `@daily`
/// too), as `load` does.
pub fn check_cron(expr: &str) -> Result<(), String> {
    values::check_cron(expr)
}

/// Whether `name` is a valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_env_name(name: &str) -> bool {
    values::valid_env_name(name)
}

/// Serde helper: a `Duration` as integer milliseconds.
mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Serde helper: an `Option<Duration>` as integer milliseconds or null.
mod opt_duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}
