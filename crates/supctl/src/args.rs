//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Control the supd process supervisor (PM2's commands, over a Unix socket).
#[derive(Parser)]
#[command(name = "supctl", version, about, propagate_version = true)]
pub struct Cli {
    /// How long to wait for the daemon to accept and, between two frames
    /// of a reply, to say something (a running request says "working"
    /// every second): `30` or `30s`, `500ms`, `2m`; `0` waits for ever.
    #[arg(long, global = true, env = "SUPCTL_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Timeout,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The commands.
#[derive(Subcommand)]
pub enum Cmd {
    /// Start the apps of an ecosystem file (*.toml or a PM2 file), or one program.
    Start(StartArgs),
    /// Stop gracefully (kill_signal, then SIGKILL after kill_timeout).
    Stop(TargetArg),
    /// Stop, then start again.
    Restart(TargetArg),
    /// Zero-downtime replace, instance by instance (NAME, all, or an ecosystem file).
    Reload(ReloadArgs),
    /// Set the number of instances: N, +N or -N.
    Scale {
        /// App name.
        name: String,
        /// N, +N or -N.
        #[arg(allow_hyphen_values = true)]
        count: String,
    },
    /// Stop and forget.
    #[command(visible_alias = "del")]
    Delete(TargetArg),
    /// The process table.
    #[command(visible_aliases = ["ls", "status", "l", "ps"])]
    List(JsonArg),
    /// The process table as JSON on one line (PM2's `jlist`).
    Jlist,
    /// The process table as indented JSON (PM2's `prettylist`; `list --json`).
    Prettylist,
    /// The pids of an app's running instances, one per line (every app's
    /// without NAME), as `pm2 pid` prints them.
    Pid {
        /// App name (default: every app).
        name: Option<String>,
    },
    /// Set restart counters back to zero (PM2's `reset`); nothing restarts.
    Reset(TargetArg),
    /// Print a completion script for a shell: `source <(supctl completions bash)`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The environment an instance was spawned with (PM2's `env`).
    Env {
        /// App name.
        name: String,
        /// Instance number.
        #[arg(default_value_t = 0)]
        instance: u32,
        /// Print JSON instead of KEY=value lines.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one app.
    #[command(visible_aliases = ["describe", "desc", "info"])]
    Show {
        /// App name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the last lines of the logs, then follow them.
    #[command(visible_alias = "log")]
    Logs(LogsArgs),
    /// Live dashboard: every instance, CPU and memory history, logs, actions.
    #[command(visible_aliases = ["dashboard", "dash", "imonit"])]
    Monit(MonitArgs),
    /// Empty log files.
    Flush {
        /// App name (default: every app).
        name: Option<String>,
    },
    /// Send a signal to every instance of an app.
    #[command(visible_alias = "sendSignal")]
    Signal {
        /// Signal name or number (SIGUSR2, USR2, 12).
        signal: String,
        /// App name or `all`.
        name: String,
    },
    /// Validate an ecosystem file without starting anything.
    Check {
        /// The ecosystem file.
        file: PathBuf,
        /// Also check that `env_NAME` applies.
        #[arg(long)]
        env: Option<String>,
        /// Only these apps (comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
    },
    /// Print a PM2 ecosystem file (.js, .cjs, .json, .yaml) as ecosystem.toml; unmapped keys on stderr.
    Import {
        /// The PM2 ecosystem file.
        file: PathBuf,
    },
    /// Print an ecosystem file as Kubernetes manifests, systemd units or a
    /// Compose file; what the format cannot express is listed on stderr.
    Export(ExportArgs),
    /// Write the process list (configs, instance counts, stopped apps) to SUPD_HOME/dump.json.
    #[command(visible_alias = "dump")]
    Save,
    /// Bring back the process list written by `save`.
    Resurrect,
    /// Print a systemd unit that runs supd at boot and resurrects the saved list.
    Startup {
        /// Write it to /etc/systemd/system and enable it (needs root).
        #[arg(long)]
        install: bool,
    },
    /// Disable and remove the unit written by `startup --install`.
    Unstartup,
    /// Replace the running daemon with the supd binary now installed,
    /// keeping its pid and every app running (nothing restarts).
    #[command(visible_alias = "updatePM2")]
    Update(JsonArg),
    /// Is the daemon alive? (starts it if not, like PM2)
    Ping(JsonArg),
    /// Stop every app, then the daemon.
    Kill,
}

/// The engines `export` writes for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// Deployments (StatefulSets for capped apps) and Services, as YAML.
    Kubernetes,
    /// Service units (templates for instances), socket units for ports, targets.
    Systemd,
    /// A Compose file (docker compose, docker stack deploy).
    Compose,
}

/// `export FORMAT FILE`.
#[derive(Args)]
pub struct ExportArgs {
    /// What to write.
    #[arg(value_enum)]
    pub format: ExportFormat,
    /// The ecosystem file (*.toml or a PM2 file).
    pub file: PathBuf,
    /// Apply `env_NAME` of the file over `env`.
    #[arg(long)]
    pub env: Option<String>,
    /// Only these apps of the file (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// The image every container runs (Kubernetes, Compose; default: the
    /// project folder's name, `:latest`).
    #[arg(long)]
    pub image: Option<String>,
    /// The folder the image holds at /app (Kubernetes, Compose; default:
    /// the file's folder): scripts and cwds under it are found there.
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Write one file per app (per unit for systemd) into DIR instead of
    /// printing them.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// `--timeout`: a bound, or none (`0`).
#[derive(Clone, Copy)]
pub struct Timeout(pub Option<std::time::Duration>);

/// A bare number is seconds (as for `timeout(1)` and curl), anything else a
/// duration with its unit.
fn parse_timeout(text: &str) -> Result<Timeout, String> {
    let duration = match text.trim().parse::<u64>() {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(_) => supd_config::parse_duration(text)?,
    };
    Ok(Timeout((!duration.is_zero()).then_some(duration)))
}

/// `start FILE.toml` or `start CMD`.
#[derive(Args)]
pub struct StartArgs {
    /// An ecosystem file (*.toml, or a PM2 file: *.config.js, .json,
    /// .yaml…), a program to run, or a known app's name (or `all`) to
    /// start with its own config.
    pub target: String,
    /// More known apps to start.
    pub more: Vec<String>,
    /// Only these apps of the file (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Apply `env_NAME` of the file over `env`.
    #[arg(long)]
    pub env: Option<String>,
    /// App name for a program (default: its file name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Instances in cluster mode: a number, `max` (cores) or -1 (cores - 1).
    #[arg(short = 'i', long = "instances", allow_hyphen_values = true)]
    pub instances: Option<String>,
    /// Port the daemon binds and hands to every instance.
    #[arg(long)]
    pub port: Option<u16>,
    /// Where that port listens: an IPv4 or IPv6 address, or `localhost`
    /// (127.0.0.1); default every interface, dual-stack `::` (IPv4 too).
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,
    /// Restart the program when files under the current folder change
    /// (PM2's `--watch`; `node_modules` and `.git` do not count).
    #[arg(long)]
    pub watch: bool,
    /// Arguments for the program, after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// `reload NAME|all` or `reload FILE.toml`.
#[derive(Args)]
pub struct ReloadArgs {
    /// App name, `all`, or an ecosystem file (*.toml or a PM2 file) to re-read.
    pub target: String,
    /// Only these apps of the file (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Apply `env_NAME` of the file over `env`.
    #[arg(long)]
    pub env: Option<String>,
}

/// One app name, `all`, or an ecosystem file (every app of it).
#[derive(Args)]
pub struct TargetArg {
    /// App name, `all`, or an ecosystem file (*.toml or a PM2 file).
    pub name: String,
}

/// `--json`.
#[derive(Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `logs` options.
#[derive(Args)]
pub struct LogsArgs {
    /// App name (default: every app, each line tagged with its app and instance).
    pub name: Option<String>,
    /// How many lines of each file to print first.
    #[arg(long, default_value_t = 15)]
    pub lines: usize,
    /// Only stderr.
    #[arg(long, conflicts_with = "out")]
    pub err: bool,
    /// Only stdout.
    #[arg(long)]
    pub out: bool,
    /// Print and exit instead of following.
    #[arg(long)]
    pub nostream: bool,
    /// Print lines as they are, without the `app:instance | ` prefix.
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,
    /// Prefix each line with the local time it was read.
    #[arg(long)]
    pub timestamp: bool,
    /// One JSON object per line (app, instance, stream, time, message).
    #[arg(long)]
    pub json: bool,
    /// Only lines matching this regular expression.
    #[arg(long, value_name = "PATTERN")]
    pub grep: Option<String>,
}

/// `monit` options.
#[derive(Args)]
pub struct MonitArgs {
    /// Milliseconds between two looks at the daemon.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub interval: u64,
}
