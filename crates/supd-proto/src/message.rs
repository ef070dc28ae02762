//! Requests, responses and the process views they carry.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use supd_config::{AppConfig, DaemonConfig, ExecMode};

/// `"all"` or one app's name.
pub type Target = String;

/// What a client asks of the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon alive?
    Ping,
    /// Start these apps; apps already online are left alone.
    Start {
        /// Resolved configs, in order.
        apps: Vec<AppConfig>,
        /// The caller's environment, under each app's own `env`.
        base_env: BTreeMap<String, String>,
        /// The file's `[daemon]` settings, if started from a file.
        #[serde(default)]
        daemon: Option<DaemonConfig>,
    },
    /// Start known apps with their own configs (`supctl start NAME…`,
    /// `start all`): stopped or errored instances are started, online apps
    /// are left alone. Answered with [`Response::Started`].
    StartKnown {
        /// App names, or `all`; an unknown one fails the request, naming it.
        targets: Vec<Target>,
    },
    /// Graceful stop.
    Stop {
        /// App name or `all`.
        target: Target,
    },
    /// Stop, then start.
    Restart {
        /// App name or `all`.
        target: Target,
    },
    /// Zero-downtime replace, slot by slot.
    Reload {
        /// App name or `all`.
        target: Target,
    },
    /// Roll new configs onto running apps the reload way; start new apps.
    ReloadApps {
        /// Resolved configs, in order.
        apps: Vec<AppConfig>,
        /// The caller's environment, under each app's own `env`.
        base_env: BTreeMap<String, String>,
        /// The file's `[daemon]` settings.
        #[serde(default)]
        daemon: Option<DaemonConfig>,
    },
    /// Change the number of instances.
    Scale {
        /// App name.
        name: String,
        /// The new count, or a change to it.
        to: ScaleTo,
    },
    /// Stop and forget.
    Delete {
        /// App name or `all`.
        target: Target,
    },
    /// The process table.
    List,
    /// Everything about one app.
    Show {
        /// App name.
        name: String,
    },
    /// Where the log files of these apps are.
    LogFiles {
        /// App name or `all`.
        target: Target,
    },
    /// Empty log files.
    Flush {
        /// App name or `all`.
        target: Target,
    },
    /// Send a signal to every instance.
    Signal {
        /// Signal name, e.g. `SIGUSR2`.
        signal: String,
        /// App name or `all`.
        target: Target,
    },
    /// Set the restart counters of every instance back to zero (PM2's
    /// `reset`), so a later count means restarts since then.
    Reset {
        /// App name or `all`.
        target: Target,
    },
    /// The environment one instance was spawned with (`supctl env`).
    Env {
        /// App name.
        name: String,
        /// Instance number.
        instance: u32,
    },
    /// Write the process list to `SUPD_HOME/dump.json`.
    Save,
    /// Bring back the saved process list.
    Resurrect,
    /// Stop every app, then exit.
    Kill,
    /// Replace the daemon with the binary now installed where it was
    /// started from, keeping every app running (`supctl update`). The
    /// daemon re-executes itself, so on success the connection closes
    /// without an answer: [`Request::Ping`] then shows the new image.
    Update,
}

/// The argument of `scale`: `N`, `+N` or `-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleTo {
    /// Exactly this many.
    Exactly(u32),
    /// This many more.
    Add(u32),
    /// This many fewer.
    Remove(u32),
}

impl std::str::FromStr for ScaleTo {
    type Err = String;

    fn from_str(s: &str) -> Result<ScaleTo, String> {
        let number = |t: &str| {
            t.parse::<u32>()
                .map_err(|_| format!("expected N, +N or -N, got \"{s}\""))
        };
        match s.as_bytes().first() {
            Some(b'+') => number(&s[1..]).map(ScaleTo::Add),
            Some(b'-') => number(&s[1..]).map(ScaleTo::Remove),
            _ => number(s).map(ScaleTo::Exactly),
        }
    }
}

/// What the daemon answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The daemon's pid.
        pid: u32,
        /// The daemon's version.
        version: String,
        /// The binary the daemon runs from.
        #[serde(default)]
        binary: Option<PathBuf>,
        /// When the running image started (Unix ms): an `update` changes it,
        /// not the pid.
        #[serde(default)]
        image_started_ms: u64,
        /// How this image started: `started`, `updated from <version>`.
        #[serde(default)]
        origin: String,
        /// The sampling interval in force, in milliseconds (`None` from an
        /// older daemon).
        #[serde(default)]
        sample_interval_ms: Option<u64>,
        /// Where metrics are served, if anywhere.
        #[serde(default)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Answer to [`Request::Start`]: one line per app.
    Started {
        /// What happened to each app.
        apps: Vec<StartOutcome>,
    },
    /// The command ran on these apps.
    Done {
        /// Names of the apps acted on.
        apps: Vec<String>,
    },
    /// Answer to [`Request::List`].
    List {
        /// One entry per instance.
        processes: Vec<ProcessInfo>,
    },
    /// Answer to [`Request::Show`].
    Show {
        /// The app.
        app: Box<AppDetail>,
    },
    /// Answer to [`Request::Env`].
    Env {
        /// Every variable, by name.
        env: BTreeMap<String, String>,
    },
    /// Answer to [`Request::LogFiles`].
    LogFiles {
        /// One entry per app.
        apps: Vec<AppLogs>,
    },
    /// Answer to [`Request::Save`].
    Saved {
        /// The dump file.
        path: PathBuf,
        /// The apps saved.
        apps: Vec<String>,
    },
    /// The request is still running (sent every second while it does), so
    /// a client can tell a long operation from a wedged daemon; print nothing.
    Working,
    /// A step of a long operation (reload, scale); the final answer follows.
    Progress {
        /// One line.
        message: String,
    },
    /// The request failed; `message` names the app and the reason.
    Error {
        /// One line.
        message: String,
    },
}

/// How `start` went for one app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartOutcome {
    /// App name.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why it failed, for [`Outcome::Failed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StartOutcome {
    /// The outcome for `name` of an attempt that gave `result`.
    pub fn of(name: String, result: Result<Outcome, String>) -> StartOutcome {
        match result {
            Ok(outcome) => StartOutcome {
                name,
                outcome,
                error: None,
            },
            Err(e) => StartOutcome {
                name,
                outcome: Outcome::Failed,
                error: Some(e),
            },
        }
    }
}

/// What `start` did with one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// New, or stopped and now started.
    Started,
    /// Was online already; left alone.
    AlreadyOnline,
    /// Registered but left stopped (resurrecting an app saved as stopped).
    Stopped,
    /// Could not be started; see `error`.
    Failed,
}

/// An instance's lifecycle state, as `list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Spawned, not yet ready.
    Launching,
    /// Running (and ready, with `wait_ready`).
    Online,
    /// Being stopped gracefully.
    Stopping,
    /// Not running, by choice.
    Stopped,
    /// Gave up after too many unstable restarts, or could not start.
    Errored,
    /// Exited; restarting after a delay.
    WaitingRestart,
}

impl Status {
    /// The spec's spelling, e.g. `waiting-restart`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Launching => "launching",
            Status::Online => "online",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Errored => "errored",
            Status::WaitingRestart => "waiting-restart",
        }
    }
}

/// One instance, as `list --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// App name.
    pub name: String,
    /// 0-based instance number.
    pub instance: u32,
    /// Current pid, if running.
    pub pid: Option<u32>,
    /// Lifecycle state.
    pub status: Status,
    /// Fork or cluster.
    pub mode: ExecMode,
    /// Restarts so far (automatic and requested).
    pub restarts: u32,
    /// Milliseconds since this process started (0 when not running).
    pub uptime_ms: u64,
    /// CPU percent of the instance's process tree.
    pub cpu: f64,
    /// RSS bytes of the instance's process tree.
    pub memory: u64,
    /// The app's port, if any.
    pub port: Option<u16>,
    /// The address that port listens on, as bound: the app's `host`, or
    /// `::` (dual-stack) or `0.0.0.0` for every interface; `None` without
    /// a port.
    #[serde(default)]
    pub host: Option<IpAddr>,
    /// Why this online instance is reported as not serving its port
    /// (connections wait and nothing accepts them), or null. `status` stays
    /// `online`: the process runs.
    #[serde(default)]
    pub problem: Option<String>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// Unix time of the exit, in milliseconds.
    pub at_ms: u64,
}

/// One instance, with the detail `show` adds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceDetail {
    /// What `list` shows.
    #[serde(flatten)]
    pub process: ProcessInfo,
    /// Unstable runs in a row (reset by a stable run).
    pub unstable_restarts: u32,
    /// How the previous process ended.
    pub last_exit: Option<ExitInfo>,
    /// Why the instance is errored or was last restarted, if known.
    pub last_error: Option<String>,
    /// The last `STATUS=…` the process sent on its notify socket.
    #[serde(default)]
    pub status_text: Option<String>,
    /// Why the daemon last restarted this instance by itself, e.g.
    /// `memory limit 150M exceeded: 162M`.
    #[serde(default)]
    pub restart_reason: Option<String>,
}

/// Everything about one app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppDetail {
    /// The resolved config.
    pub config: AppConfig,
    /// Where the app's port listens, as bound (see [`ProcessInfo::host`]);
    /// `config.host` is what was asked, `None` for every interface.
    #[serde(default)]
    pub host: Option<IpAddr>,
    /// The instances.
    pub instances: Vec<InstanceDetail>,
    /// Log files.
    pub logs: AppLogs,
    /// When `cron_restart` next fires (RFC 3339, local time), if set.
    #[serde(default)]
    pub next_cron_restart: Option<String>,
    /// A problem writing the log files (disk full…), while it lasts.
    #[serde(default)]
    pub log_problem: Option<String>,
    /// A problem watching the app's `watch` paths (an inotify limit, a
    /// watched path that is gone), while it lasts.
    #[serde(default)]
    pub watch_problem: Option<String>,
}

/// Where one app's logs are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppLogs {
    /// App name.
    pub name: String,
    /// stdout file (merged over instances).
    pub out: PathBuf,
    /// stderr file (merged over instances).
    pub err: PathBuf,
    /// The file with both streams (`log_file`), if any.
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// With `merge_logs = false`: one pair per instance (then the merged
    /// files are not written).
    #[serde(default)]
    pub instances: Vec<InstanceLogs>,
}

/// The log files of one instance (`merge_logs = false`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceLogs {
    /// Instance number.
    pub instance: u32,
    /// stdout file.
    pub out: PathBuf,
    /// stderr file.
    pub err: PathBuf,
    /// The file with both streams (`log_file`), if any.
    #[serde(default)]
    pub log: Option<PathBuf>,
}
