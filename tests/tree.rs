//! The whole process tree dies with its app: a child that left the
//! instance's process group (`setsid`) is gone after `stop`, `delete`,
//! `restart` and `supctl kill`, even when it ignores the stop signal, and
//! after its main process crashed; a process outside the tree is never
//! touched.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::{KillOnDrop, Supd, alive, wait_for};

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`.
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_ascii_whitespace().nth(n - 3)?.parse().ok()
}

/// A process that left its app's group, named by pid and start time.
struct Escaped {
    pid: u32,
    start_time: u64,
}

impl Escaped {
    fn alive(&self) -> bool {
        alive(self.pid) && stat_field(self.pid, 22) == Some(self.start_time)
    }

    /// Waits (bounded) until it is gone.
    fn wait_gone(&self, what: &str) {
        wait_for(Duration::from_secs(10), what, || {
            (!self.alive()).then_some(())
        });
    }
}

/// Every escaped child a test's apps started (their pids are listed in
/// `list`): SIGKILLed at drop if they still run with this test's
/// `SUPD_HOME`, so a failing test leaves none behind.
struct Sweep {
    home: PathBuf,
    list: PathBuf,
}

impl Drop for Sweep {
    fn drop(&mut self) {
        let ours = format!("SUPD_HOME={}", self.home.display());
        let listed = std::fs::read_to_string(&self.list).unwrap_or_default();
        for pid in listed.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if environ.split(|&b| b == 0).any(|v| v == ours.as_bytes()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Starts app `name`: its main process starts a child that calls `setsid`
/// (a session and process group of its own) and writes its pid to a file,
/// then both sleep. With `ignore`, the child ignores SIGINT and SIGTERM.
fn start_app(supd: &Supd, name: &str, ignore: bool, keys: &str) -> (PathBuf, Sweep) {
    let pid_file = supd.work().join(format!("{name}.escaped"));
    let sweep = Sweep {
        home: supd.home(),
        list: supd.work().join(format!("{name}.all")),
    };
    let trap = if ignore { "trap \"\" INT TERM; " } else { "" };
    let script = supd.script(
        &format!("{name}.sh"),
        &format!(
            "rm -f {f}\nsetsid sh -c '{trap}echo $$ >> {all}; echo $$ > {f}.tmp; mv {f}.tmp {f}; exec sleep 1000' &\nexec sleep 1000",
            f = pid_file.display(),
            all = sweep.list.display(),
        ),
    );
    supd.start_script(name, &script, keys);
    (pid_file, sweep)
}

/// The escaped child of the app's current process, once it has written its
/// pid: checked to be in another group than the app's main process.
fn escaped(supd: &Supd, name: &str, pid_file: &PathBuf, previous: Option<u32>) -> Escaped {
    let pid = wait_for(Duration::from_secs(10), "the escaped child's pid", || {
        std::fs::read_to_string(pid_file)
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&p| Some(p) != previous)
    });
    let start_time = stat_field(pid, 22).expect("the escaped child runs");
    let escaped = Escaped { pid, start_time };
    let leader = supd.instance(name, 0)["pid"].as_u64().expect("a pid") as u32;
    assert_ne!(
        stat_field(pid, 5),
        Some(u64::from(leader)),
        "the child left the app's process group"
    );
    escaped
}

/// An unrelated process that looks like the app's (same command line): it
/// must outlive everything the tests do.
fn bystander() -> KillOnDrop {
    KillOnDrop(
        std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap(),
    )
}

#[test]
fn stop_reaches_a_child_that_left_the_group_with_the_stop_signal() {
    let supd = Supd::new();
    let mut other = bystander();
    // A long kill_timeout: only the stop signal itself can end it in time.
    let (file, _sweep) = start_app(
        &supd,
        "worker",
        false,
        "kill_signal = \"SIGTERM\"\nkill_timeout = \"30s\"\n",
    );
    let child = escaped(&supd, "worker", &file, None);
    let started = Instant::now();
    supd.ok(&["stop", "worker"]);
    let took = started.elapsed();
    assert!(!child.alive(), "stop returned with the escaped child alive");
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    assert!(other.0.try_wait().unwrap().is_none(), "the bystander runs");
}

#[test]
fn stop_and_delete_kill_a_child_that_ignores_the_stop_signal_at_kill_timeout() {
    let supd = Supd::new();
    let mut other = bystander();
    let keys = "kill_timeout = \"1s\"\n";
    let (file, _sweep) = start_app(&supd, "stubborn", true, keys);
    let child = escaped(&supd, "stubborn", &file, None);
    supd.ok(&["stop", "stubborn"]);
    assert!(!child.alive(), "stop returned with the escaped child alive");

    let toml = supd.work().join("stubborn.toml");
    supd.ok(&["start", toml.to_str().unwrap()]);
    let child = escaped(&supd, "stubborn", &file, Some(child.pid));
    supd.ok(&["delete", "stubborn"]);
    assert!(
        !child.alive(),
        "delete returned with the escaped child alive"
    );
    assert!(other.0.try_wait().unwrap().is_none(), "the bystander runs");
}

#[test]
fn restart_replaces_the_escaped_child_too() {
    let supd = Supd::new();
    let (file, _sweep) = start_app(&supd, "worker", true, "kill_timeout = \"1s\"\n");
    let old = escaped(&supd, "worker", &file, None);
    supd.ok(&["restart", "worker"]);
    assert!(!old.alive(), "restart left the old escaped child running");
    let new = escaped(&supd, "worker", &file, Some(old.pid));
    assert!(new.alive());
}

#[test]
fn kill_leaves_no_escaped_child_behind() {
    let supd = Supd::new();
    let mut other = bystander();
    let (file, _sweep) = start_app(&supd, "worker", true, "kill_timeout = \"1s\"\n");
    let child = escaped(&supd, "worker", &file, None);
    supd.ok(&["kill"]);
    child.wait_gone("the escaped child to be gone");
    assert!(other.0.try_wait().unwrap().is_none(), "the bystander runs");
}

#[test]
fn a_crashed_main_process_takes_its_escaped_child_with_it() {
    crash_with_escaped_child("");
}

/// The first `list` of a new instance reads its tree before the monitor
/// does: what it finds is killed with the main process all the same.
#[test]
fn a_child_seen_by_the_first_list_goes_with_a_crash_before_the_first_sample() {
    crash_with_escaped_child("[daemon]\nsample_interval = \"5s\"\n");
}

/// Starts an app (with `keys`) whose child escapes its group and ignores
/// the stop signals; once a figure counts the child, SIGKILLs the main
/// process: the old child must be gone, the restarted instance's kept.
fn crash_with_escaped_child(keys: &str) {
    let supd = Supd::new();
    let mut other = bystander();
    let (file, _sweep) = start_app(&supd, "crashy", true, keys);
    let old = escaped(&supd, "crashy", &file, None);
    let leader = supd.instance("crashy", 0)["pid"].as_u64().unwrap() as i32;
    // The memory figure (a sample, or the first read of the tree) must
    // count the child: the two processes' resident pages.
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    let rss = |pid: u32| stat_field(pid, 24).unwrap_or(0) * page;
    let both = rss(leader as u32) + rss(old.pid);
    wait_for(Duration::from_secs(10), "a figure with the child", || {
        (supd.instance("crashy", 0)["memory"].as_u64() >= Some(both)).then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(leader),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let new = escaped(&supd, "crashy", &file, Some(old.pid));
    old.wait_gone("the old escaped child to be gone");
    assert!(new.alive(), "the restarted instance's child is left alone");
    assert!(other.0.try_wait().unwrap().is_none(), "the bystander runs");
}
