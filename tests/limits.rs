//! Limits on instances and operations (issue 15, findings 1, 6, part of 3
//! and 8): caps refused up front, stops that preempt a start, a state file
//! that cannot wedge the next daemon, spawns retried when descriptors come
//! back.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{KillOnDrop, Supd, alive, wait_for};

/// How long a stop that preempts a 20 s readiness wait may take: a stop of
/// a process that exits on its first signal, with room for a loaded machine.
const PREEMPT_BOUND: Duration = Duration::from_secs(5);

fn daemon_log(supd: &Supd) -> String {
    std::fs::read_to_string(supd.home().join("supd.log")).unwrap_or_default()
}

#[test]
fn check_refuses_instances_over_the_cap_naming_file_line_key_and_cap() {
    let supd = Supd::new();
    let path = supd.write(
        "eco.toml",
        "[[apps]]\nname = \"many\"\nscript = \"sleep\"\ninstances = 100000\n",
    );
    let err = supd.fails(&["check", path.to_str().unwrap()]);
    assert!(
        err.contains("eco.toml:4") && err.contains("instances") && err.contains("at most 1024"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn the_command_line_refuses_too_many_instances_and_too_long_names_at_once() {
    let supd = Supd::new();
    let started = Instant::now();
    let err = supd.fails(&["start", "sleep", "-i", "100000", "--", "1000"]);
    assert!(err.contains("at most 1024"), "{err}");
    let long = "a".repeat(240);
    let err = supd.fails(&["start", "sleep", "--name", &long, "--", "1000"]);
    assert!(err.contains("at most 128"), "{err}");
    assert!(supd.list().is_empty(), "nothing registered");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refused at once"
    );

    supd.ok(&["start", "sleep", "--name", "nap", "--", "1000"]);
    let err = supd.fails(&["scale", "nap", "100000"]);
    assert!(err.contains("at most 1024"), "{err}");
    assert_eq!(supd.list().len(), 1);
}

#[test]
fn a_program_that_is_not_executable_is_refused_and_nothing_is_registered() {
    let supd = Supd::new();
    let err = supd.fails(&["start", "/etc/passwd"]);
    assert!(
        err.contains("passwd") && err.contains("not executable"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(supd.list().is_empty(), "no errored app left behind");
}

#[test]
fn a_state_file_with_too_many_instances_does_not_wedge_the_next_daemon() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    let old = supd.crash();
    let path = supd.home().join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["apps"][0]["config"]["instances"] = 100_000.into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

    let started = Instant::now();
    let rows = supd.list();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "list answered in {:?}",
        started.elapsed()
    );
    assert!(rows.is_empty(), "the app is not brought back: {rows:?}");
    assert!(!alive(old[0]), "the leftover was stopped");
    let log = daemon_log(&supd);
    assert!(
        log.lines()
            .any(|l| l.contains("\"nap\"") && l.contains("at most 1024")),
        "the cap named in supd.log:\n{log}"
    );
}

/// Starts `name`, whose process never says it is ready (20 s
/// `listen_timeout`), with a `supctl start` left running; returns that
/// command and the process's pid once it is launching.
fn start_never_ready(supd: &Supd, name: &str) -> (KillOnDrop, u32) {
    let file = supd.write(
        &format!("{name}.toml"),
        &format!(
            "[[apps]]\nname = \"{name}\"\nscript = \"sleep\"\nargs = [\"300\"]\nwait_ready = true\nlisten_timeout = \"20s\"\n"
        ),
    );
    supd.ok(&["ping"]);
    let start = KillOnDrop(
        supd.cmd(&["start", file.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let row = supd.wait_instance(name, 0, "launching", |p| p["status"] == "launching");
    (start, row["pid"].as_u64().unwrap() as u32)
}

/// Waits (bounded) for the `supctl start` to give up; its exit status.
fn start_ends(mut start: KillOnDrop) -> std::process::ExitStatus {
    wait_for(PREEMPT_BOUND, "the start to end", || {
        start.0.try_wait().unwrap()
    })
}

#[test]
fn stop_preempts_a_start_waiting_for_readiness() {
    let supd = Supd::new();
    let (start, pid) = start_never_ready(&supd, "slow");
    let began = Instant::now();
    supd.ok(&["stop", "slow"]);
    let took = began.elapsed();
    assert!(took < PREEMPT_BOUND, "stop took {took:?}");
    assert!(!start_ends(start).success(), "the start says it failed");
    assert!(!alive(pid), "the process is gone");
    assert_eq!(supd.instance("slow", 0)["status"], "stopped");
}

/// Asserts that `end` (which ends the daemon) stops it, and the process
/// that was waiting for readiness, within [`PREEMPT_BOUND`].
fn daemon_end_preempts_a_start(end: impl FnOnce(&Supd, u32)) {
    let supd = Supd::new();
    let (start, pid) = start_never_ready(&supd, "slow");
    let daemon = supd.daemon_pid().unwrap();
    let began = Instant::now();
    end(&supd, daemon);
    wait_for(PREEMPT_BOUND, "the daemon to exit", || {
        (!alive(daemon)).then_some(())
    });
    assert!(
        began.elapsed() < PREEMPT_BOUND,
        "took {:?}",
        began.elapsed()
    );
    start_ends(start);
    assert!(!alive(pid), "the process is gone");
}

#[test]
fn kill_preempts_a_start_waiting_for_readiness() {
    daemon_end_preempts_a_start(|supd, _| drop(supd.ok(&["kill"])));
}

#[test]
fn sigterm_preempts_a_start_waiting_for_readiness() {
    daemon_end_preempts_a_start(|_, daemon| {
        kill(Pid::from_raw(daemon as i32), Signal::SIGTERM).unwrap();
    });
}

/// Sets the soft and hard open-files limits of `pid` with prlimit(1).
fn prlimit(pid: u32, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}")])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit {limit}");
}

#[test]
fn a_spawn_that_failed_for_lack_of_descriptors_is_retried_once_they_are_back() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    let old = supd.instance("nap", 0)["pid"].as_u64().unwrap() as u32;
    let daemon = supd.daemon_pid().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{daemon}/limits")).unwrap();
    let (soft, hard) = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| {
            let mut f = l.split_whitespace().skip(3);
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .unwrap();
    // No descriptor left beyond stdio: the restart after the crash cannot
    // open its pipes (a limit below the descriptors open keeps them open).
    prlimit(daemon, &format!("3:{hard}"));
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    wait_for(
        Duration::from_secs(10),
        "a failed respawn in supd.log",
        || {
            daemon_log(&supd)
                .lines()
                .any(|l| l.contains("Too many open files"))
                .then_some(())
        },
    );
    prlimit(daemon, &format!("{soft}:{hard}"));
    let row = supd.wait_instance("nap", 0, "online again", |p| {
        p["status"] == "online" && p["pid"].as_u64() != Some(u64::from(old))
    });
    assert!(alive(row["pid"].as_u64().unwrap() as u32));
}

#[test]
fn spawns_work_under_a_hard_limit_of_64_descriptors() {
    use nix::sys::resource::{Resource, setrlimit};
    use std::os::unix::process::CommandExt;
    let supd = Supd::new();
    supd.start_with(|cmd| {
        // SAFETY: setrlimit is a plain system call, fine between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                setrlimit(Resource::RLIMIT_NOFILE, 64, 64).map_err(std::io::Error::from)
            });
        }
    });
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    assert_eq!(supd.instance("nap", 0)["status"], "online");
}
