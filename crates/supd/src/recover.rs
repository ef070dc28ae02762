//! Taking over from a daemon that died without stopping its apps.
//!
//! Its apps are replaced, not re-adopted: [`run`] first keeps their
//! listening sockets (see [`crate::takeover`]), so their ports stay open
//! and their queued connections wait; then it stops every process it left
//! (the app's `kill_signal` to each process group, SIGKILL after its
//! `kill_timeout`) and waits until they are gone; then it brings the apps
//! back from the state file as `resurrect` does, on the sockets it kept.
//! A new daemon cannot reap processes it did not start, nor take back their
//! notify sockets and Node IPC channels, so an adopted process would be
//! supervised less than one of its own (see docs/operations.md).
//!
//! The processes are found in two ways, so that neither a change the state
//! file had no time to record nor a damaged state file leaves one running:
//! - the process groups the state file records, whose leader must still
//!   have the recorded start time: a pid the kernel has given to another
//!   process since is left alone;
//! - the groups of the recorded leaders' descendants that left their group
//!   (`setsid`), found by walking the tree from each leader still running;
//! - every process whose stdout or stderr is one of this home's pipes (see
//!   [`AppLog::pipe`]), which a child keeps even if it left its group.
//!
//! While they stop, what they write still goes to their log files: lines
//! written while no daemon ran are kept, and an app blocked on a full pipe
//! can run its shutdown handler.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use supd_config::AppConfig;
use supd_proto::{Home, Outcome};
use supd_supervisor::group::{self, parse_signal};
use supd_supervisor::procfs;

use crate::app::KILL_GRACE;
use crate::logs::{self, AppLog, Stream};
use crate::registry::Registry;
use crate::state::{self, Left, Recorded};
use crate::takeover;

/// How often the leftover groups are looked at while they stop.
const POLL: Duration = Duration::from_millis(20);

/// If the previous daemon died without stopping, stops what it left running
/// and brings its apps back; says what it did in the daemon log.
pub async fn run(home: &Home, registry: &Registry) {
    let Some(left) = state::left_behind(home) else {
        return;
    };
    tracing::warn!("the previous supd did not stop cleanly: replacing its apps");
    for problem in &left.problems {
        tracing::error!("{problem}");
    }
    if left.earlier_boot {
        tracing::info!(
            "its state file is from an earlier boot, none of its processes runs: nothing to replace (supctl resurrect brings back the saved list)"
        );
        return;
    }
    let taken = takeover::take(&left.apps, &left.processes);
    stop_leftovers(home, &left).await;
    for done in registry.restore(left.apps, taken).await {
        match done.outcome {
            Outcome::Failed => tracing::error!(
                app = %done.name,
                "cannot bring it back: {}",
                done.error.unwrap_or_default()
            ),
            Outcome::Stopped => tracing::info!(app = %done.name, "restored, stopped"),
            _ => tracing::info!(app = %done.name, "restarted"),
        }
    }
}

/// What a dead daemon left running.
#[derive(Default)]
struct Leftovers {
    /// Process group → its app.
    groups: BTreeMap<u32, String>,
    /// Their pipes, reopened (one descriptor per pipe): app, instance, stream.
    pipes: Vec<(String, u32, Stream, OwnedFd)>,
}

/// Stops every process group a dead daemon left, as its app would be
/// stopped, and waits until none of their processes runs.
async fn stop_leftovers(home: &Home, left: &Left) {
    let found = find(home, &left.processes);
    if found.groups.is_empty() {
        tracing::info!("no process of the previous supd is left");
        return;
    }
    let config = |app: &str| {
        left.apps
            .iter()
            .find(|a| a.config.name == app)
            .map(|a| a.config.clone())
            .unwrap_or_else(|| AppConfig::with_defaults(app.into(), String::new(), "/".into()))
    };
    // Held until they are gone; each pipe's reader ends at its EOF.
    let mut logs: HashMap<String, AppLog> = HashMap::new();
    for (app, slot, stream, fd) in found.pipes {
        let config = config(&app);
        if !logs.contains_key(&app) {
            match AppLog::open(home, &config) {
                Ok(log) => drop(logs.insert(app.clone(), log)),
                Err(e) => tracing::warn!(app, "cannot open log files: {e}"),
            }
        }
        if let Some(log) = logs.get_mut(&app) {
            log.attach(stream, slot, fd, config.log_date_format);
        }
    }
    let started = Instant::now();
    // Group, its kill_timeout, and whether it has had SIGKILL.
    let mut pending: Vec<(u32, Duration, bool)> = Vec::new();
    for (&pgid, app) in &found.groups {
        let config = config(app);
        let signal = parse_signal(&config.kill_signal).unwrap_or(Signal::SIGINT);
        tracing::info!(
            app,
            pgid,
            "stopping a process group the previous supd left ({signal})"
        );
        group::signal(pgid, signal);
        pending.push((pgid, config.kill_timeout, false));
    }
    loop {
        let running: HashSet<u32> = running().into_values().map(|s| s.pgid).collect();
        pending.retain(|(pgid, _, _)| running.contains(pgid));
        let elapsed = started.elapsed();
        for (pgid, timeout, killed) in &mut pending {
            if !*killed && elapsed >= *timeout {
                tracing::warn!(pgid, "kill_timeout reached: SIGKILL to the process group");
                group::signal(*pgid, Signal::SIGKILL);
                *killed = true;
            }
        }
        if pending.is_empty() {
            break;
        }
        if pending
            .iter()
            .all(|&(_, timeout, killed)| killed && elapsed >= timeout + KILL_GRACE)
        {
            for (pgid, _, _) in &pending {
                tracing::error!(pgid, "process group survived SIGKILL; giving up on it");
            }
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    tracing::info!(
        groups = found.groups.len(),
        "the previous supd's processes are gone"
    );
}

/// The processes that have not exited, by pid, at one moment.
fn running() -> HashMap<u32, procfs::Stat> {
    procfs::pids()
        .into_iter()
        .filter_map(|pid| Some((pid, procfs::stat(pid)?)))
        .filter(|(_, stat)| !stat.exited)
        .collect()
}

/// Finds the process groups a dead daemon of `home` left, from the groups
/// it `recorded` and from the processes that hold one of its pipes.
fn find(home: &Home, recorded: &[Recorded]) -> Leftovers {
    let processes = running();
    let mut found = Leftovers::default();
    for r in recorded {
        let leader = processes.get(&r.pid);
        if leader.is_some_and(|l| l.start_time != r.start_time) {
            tracing::info!(app = %r.app, pid = r.pid, "the recorded pid is another process now: left alone");
            continue;
        }
        // The leader itself, or (if it has exited) processes started after it.
        let left = processes
            .iter()
            .any(|(&pid, s)| s.pgid == r.pid && (pid == r.pid || s.start_time >= r.start_time));
        if left {
            found.groups.insert(r.pid, r.app.clone());
        }
        // Its descendants that left the group (setsid), while it lives to
        // be walked from: their own groups are stopped with it.
        if leader.is_some() {
            for (_, stat) in procfs::descendants(r.pid) {
                found
                    .groups
                    .entry(stat.pgid)
                    .or_insert_with(|| r.app.clone());
            }
        }
    }
    let run_dir = crate::home::run_dir(home);
    let run_dir = std::fs::canonicalize(&run_dir).unwrap_or(run_dir);
    let mut opened = HashSet::new();
    for (&pid, stat) in &processes {
        for fd in [1, 2] {
            let link = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
            let Some((app, slot, stream)) = std::fs::read_link(&link)
                .ok()
                .and_then(|target| logs::parse_pipe(&run_dir, &target))
            else {
                continue;
            };
            found.groups.entry(stat.pgid).or_insert_with(|| app.clone());
            let Ok(pipe) = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&link)
            else {
                continue;
            };
            let key = pipe.metadata().map(|m| (m.dev(), m.ino()));
            if key.is_ok_and(|key| opened.insert(key)) {
                found.pipes.push((app, slot, stream, pipe.into()));
            }
        }
    }
    // Never our own group, nor init's.
    let ours = nix::unistd::getpgrp().as_raw() as u32;
    found.groups.retain(|&pgid, _| pgid > 1 && pgid != ours);
    found
}
