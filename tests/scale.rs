//! Daemon self-protection: a crash-looping storm, a thousand processes and
//! two hundred concurrent calls, with the daemon answering all along.
//!
//! Every latency here is measured end to end, as a user sees it: a whole
//! `supctl` process, started, connected, answered and exited. The bounds are
//! generous for a busy 2-CPU CI machine and still far below what a daemon in
//! trouble shows (a call stuck behind a storm, a table that takes seconds to
//! build, a spawn failing on its descriptor limit). Each test prints its
//! figures: `cargo test --test e2e scale:: -- --nocapture`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Supd, alive, exists, open_files_limit, wait_for, zombie_children};

/// Apps in the crash storm.
const STORM_APPS: usize = 50;
/// How long the storm is watched.
const STORM: Duration = Duration::from_secs(6);
/// The slowest `ping` or `list --json` allowed during the storm.
const STORM_CALL_LIMIT: Duration = Duration::from_secs(1);
/// Processes in the scale test.
const THOUSAND: usize = 1000;
/// From `supctl start` to every one of them online.
const THOUSAND_START_LIMIT: Duration = Duration::from_secs(30);
/// The slowest `list --json` of a thousand rows allowed.
const THOUSAND_LIST_LIMIT: Duration = Duration::from_secs(1);
/// The longest `stop all` of a thousand processes allowed.
const THOUSAND_STOP_LIMIT: Duration = Duration::from_secs(5);
/// Concurrent supctl calls.
const CONCURRENT: usize = 200;
/// The slowest of the concurrent calls allowed.
const CONCURRENT_CALL_LIMIT: Duration = Duration::from_secs(5);

/// Call durations, for a median and a maximum.
#[derive(Default)]
struct Latencies(Vec<Duration>);

impl Latencies {
    /// Runs `call`, recording how long it took; its result.
    fn time<T>(&mut self, call: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let result = call();
        self.0.push(start.elapsed());
        result
    }

    /// The middle duration (the upper one of an even count).
    fn median(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    /// The slowest call.
    fn max(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }

    /// Asserts that no call took `limit` or longer.
    fn assert_below(&self, limit: Duration, what: &str) {
        assert!(
            self.max() < limit,
            "{what}: the slowest of {} calls took {:?} (median {:?}), limit {limit:?}",
            self.0.len(),
            self.max(),
            self.median()
        );
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} calls, median {:?}, max {:?}",
            self.0.len(),
            self.median(),
            self.max()
        )
    }
}

/// How many descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// CPU time `pid` has used (all its threads), user and system.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// An ecosystem file with one `[[apps]]` table per name, each from `app`.
fn ecosystem(names: impl Iterator<Item = String>, app: impl Fn(&str) -> String) -> String {
    names.map(|name| app(&name)).collect()
}

/// The `restarts` of a `list --json` row.
fn restarts(row: &Value) -> u64 {
    row["restarts"].as_u64().expect("restarts")
}

#[test]
fn a_crash_storm_of_50_apps_leaves_the_daemon_responsive_and_counting() {
    let supd = Supd::new();
    let runs = supd.work().join("runs");
    std::fs::create_dir(&runs).unwrap();
    // Every run appends a line to its app's file, then crashes 0.2 s later;
    // restarts are immediate (restart_delay 0) and never end in `errored`.
    let file = supd.write(
        "storm.toml",
        &ecosystem((0..STORM_APPS).map(|a| format!("crash-{a}")), |name| {
            format!(
                "[[apps]]\nname = \"{name}\"\nscript = \"sh\"\nargs = [\"-c\", \"echo run >> {}/$SUPD_APP_NAME; sleep 0.2; exit 1\"]\nmax_restarts = 1000000\n\n",
                runs.display()
            )
        }),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let daemon = supd.daemon_pid().expect("daemon pid");
    wait_for(Duration::from_secs(30), "every app crashed once", || {
        supd.list().iter().all(|r| restarts(r) >= 1).then_some(())
    });
    let fds_at_start = open_fds(daemon);
    let cpu_at_start = cpu_time(daemon);

    let (mut pings, mut lists) = (Latencies::default(), Latencies::default());
    let (mut most_fds, mut most_zombies) = (fds_at_start, 0);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let begun = Instant::now();
    while begun.elapsed() < STORM {
        let pong = pings.time(|| supd.ok(&["ping"]));
        assert!(pong.contains("pong"), "{pong}");
        let rows = lists.time(|| supd.list());
        assert_eq!(rows.len(), STORM_APPS);
        for row in &rows {
            let name = row["name"].as_str().unwrap().to_string();
            let before = seen.insert(name.clone(), restarts(row)).unwrap_or(0);
            assert!(restarts(row) >= before, "{name}: restarts went back: {row}");
        }
        most_fds = most_fds.max(open_fds(daemon));
        most_zombies = most_zombies.max(zombie_children(daemon).len());
    }
    let storm_cpu = cpu_time(daemon) - cpu_at_start;
    let mut stop = Latencies::default();
    stop.time(|| supd.ok(&["stop", "all"]));

    let total: u64 = seen.values().sum();
    eprintln!(
        "storm: {STORM_APPS} apps for {STORM:?}, {total} restarts, daemon CPU {storm_cpu:?}; \
         ping {pings}; list {lists}; stop all {:?}; daemon fds {fds_at_start} at start, \
         {most_fds} at most; zombies at most {most_zombies} at a time",
        stop.max()
    );
    pings.assert_below(STORM_CALL_LIMIT, "ping during the storm");
    lists.assert_below(STORM_CALL_LIMIT, "list --json during the storm");
    // Restarts counted exactly: each app ran once more than it was
    // restarted, and only the last run may have been stopped before it wrote.
    for row in supd.list() {
        let name = row["name"].as_str().unwrap();
        assert_eq!(row["status"], "stopped", "{row}");
        let runs = std::fs::read_to_string(runs.join(name))
            .unwrap()
            .lines()
            .count() as u64;
        let restarts = restarts(&row);
        assert!(
            (restarts..=restarts + 1).contains(&runs),
            "{name}: {runs} runs for {restarts} restarts"
        );
        // A run lasts 0.2 s: a daemon that keeps up restarts each app many
        // times in the storm, not just a few.
        assert!(
            restarts >= 5,
            "{name}: only {restarts} restarts in {STORM:?}"
        );
    }
    // One process per app at a time: its pipes and notify socket come and
    // go with it, so the daemon's descriptors stay level; a leak of one per
    // restart would add hundreds.
    assert!(
        most_fds <= fds_at_start + 3 * STORM_APPS,
        "the daemon's descriptors grew from {fds_at_start} to {most_fds} during the storm"
    );
    let after = wait_for(
        Duration::from_secs(10),
        "the daemon's descriptors back down",
        || {
            let fds = open_fds(daemon);
            (fds < fds_at_start).then_some(fds)
        },
    );
    eprintln!("storm: daemon fds after stop all: {after}");
    wait_for(
        Duration::from_secs(5),
        "no zombie child of the daemon",
        || zombie_children(daemon).is_empty().then_some(()),
    );
}

#[test]
fn a_thousand_processes_start_list_and_stop_within_bounds() {
    let supd = Supd::new();
    // The default soft limit of many sessions, far below the 5,000-odd
    // descriptors a thousand apps take (pipes, notify sockets, log files):
    // the daemon must raise its own.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    assert!(
        hard >= 8192,
        "the hard open-files limit ({hard}) is too low for a thousand apps: raise it (ulimit -Hn)"
    );
    supd.start_with_open_files(1024);
    let daemon = supd.daemon_pid().expect("daemon pid");
    let cpu_before = cpu_time(daemon);
    let file = supd.write(
        "thousand.toml",
        &ecosystem((0..THOUSAND).map(|i| format!("idle-{i}")), |name| {
            format!("[[apps]]\nname = \"{name}\"\nscript = \"sleep\"\nargs = [\"600\"]\n\n")
        }),
    );
    let started = Instant::now();
    supd.ok(&["start", file.to_str().unwrap()]);
    let returned = started.elapsed();
    let rows = wait_for(THOUSAND_START_LIMIT, "a thousand processes online", || {
        let rows = supd.list();
        (rows.len() == THOUSAND && rows.iter().all(|r| r["status"] == "online")).then_some(rows)
    });
    let online = started.elapsed();
    let start_cpu = cpu_time(daemon) - cpu_before;

    let mut lists = Latencies::default();
    for _ in 0..5 {
        assert_eq!(lists.time(|| supd.list()).len(), THOUSAND);
    }
    let pids: Vec<u32> = rows
        .iter()
        .map(|r| r["pid"].as_u64().expect("pid") as u32)
        .collect();
    // Each child got the limit the daemon started with, not the raised one.
    assert_eq!(open_files_limit(pids[THOUSAND / 2]), 1024);
    let rss_kib = std::fs::read_to_string(format!("/proc/{daemon}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let fds = open_fds(daemon);

    let mut stop = Latencies::default();
    stop.time(|| supd.ok(&["stop", "all"]));
    eprintln!(
        "thousand: start returned after {returned:?}, all online after {online:?} \
         (daemon CPU {start_cpu:?}); list --json {lists}; daemon RSS {} MiB, {fds} fds; \
         stop all {:?}",
        rss_kib / 1024,
        stop.max()
    );
    assert!(online < THOUSAND_START_LIMIT, "online after {online:?}");
    lists.assert_below(THOUSAND_LIST_LIMIT, "list --json of 1,000 rows");
    stop.assert_below(THOUSAND_STOP_LIMIT, "stop all");
    // `stop` answers once every process group is empty, zombies included.
    let left: Vec<u32> = pids.iter().copied().filter(|&p| exists(p)).collect();
    assert!(
        left.is_empty(),
        "{} processes left after stop all",
        left.len()
    );
    assert!(supd.list().iter().all(|r| r["status"] == "stopped"));
    supd.ok(&["kill"]);
    wait_for(Duration::from_secs(10), "the daemon gone", || {
        (!alive(daemon)).then_some(())
    });
}

#[test]
fn two_hundred_concurrent_calls_all_answer() {
    let supd = Supd::new();
    let apps = 20;
    let file = supd.write(
        "few.toml",
        &ecosystem((0..apps).map(|i| format!("idle-{i}")), |name| {
            format!("[[apps]]\nname = \"{name}\"\nscript = \"sleep\"\nargs = [\"600\"]\n\n")
        }),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let barrier = std::sync::Barrier::new(CONCURRENT);
    let results: Vec<(Duration, &str, std::process::Output)> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..CONCURRENT)
            .map(|i| {
                let barrier = &barrier;
                let supd = &supd;
                s.spawn(move || {
                    let args: &[&str] = if i % 2 == 0 {
                        &["list", "--json"]
                    } else {
                        &["ping"]
                    };
                    barrier.wait();
                    let start = Instant::now();
                    let out = supd.run(args);
                    (start.elapsed(), args[0], out)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut all = Latencies::default();
    for (took, command, out) in results {
        all.0.push(took);
        assert!(
            out.status.success(),
            "a concurrent {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        match command {
            "list" => {
                let rows: Vec<Value> = serde_json::from_str(&stdout).expect("list --json");
                assert_eq!(rows.len(), apps);
            }
            _ => assert!(stdout.contains("pong"), "{stdout}"),
        }
    }
    eprintln!("concurrent: {CONCURRENT} calls at once: {all}");
    all.assert_below(CONCURRENT_CALL_LIMIT, "concurrent calls");
}
