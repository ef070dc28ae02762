//! Fork mode: lifecycle, restart policy, process groups, environment, fds.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Supd, alive, exists, wait_for, zombie_children};

/// Writes an ecosystem file with one app and the given extra keys.
fn one_app(supd: &Supd, name: &str, script: &std::path::Path, extra: &str) -> String {
    let body = format!(
        "[[apps]]\nname = \"{name}\"\nscript = \"{}\"\n{extra}\n",
        script.display()
    );
    supd.write(&format!("{name}.toml"), &body)
        .display()
        .to_string()
}

fn pid_of(row: &Value) -> u32 {
    row["pid"].as_u64().expect("a pid") as u32
}

/// The descriptors of `pid`, sorted, once they are `want` (or as they are
/// after 10 s): a program that is starting holds one for a moment (the
/// loader each library, a shell its script), so a list that differs is
/// looked at again. A leaked descriptor stays, and fails the comparison.
fn settled_fds(pid: u32, want: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        if fds == want || std::time::Instant::now() > deadline {
            return fds;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn start_list_stop_restart_and_delete() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    supd.wait_instance("nap", 0, "nap online", |p| p["status"] == "online");
    // Figures come from the monitor's next sample (every second).
    let row = supd.wait_instance("nap", 0, "nap sampled", |p| p["memory"].as_u64() > Some(0));
    for key in [
        "name",
        "instance",
        "pid",
        "status",
        "mode",
        "restarts",
        "uptime_ms",
        "cpu",
        "memory",
        "port",
    ] {
        assert!(row.get(key).is_some(), "list --json lacks {key}: {row}");
    }
    assert_eq!(row["mode"], "fork");
    let first = pid_of(&row);

    supd.ok(&["restart", "nap"]);
    let row = supd.instance("nap", 0);
    assert_eq!(row["restarts"], 1);
    assert_ne!(pid_of(&row), first);
    assert!(!alive(first), "the old process is gone after restart");

    let second = pid_of(&row);
    supd.ok(&["stop", "nap"]);
    let row = supd.instance("nap", 0);
    assert_eq!(row["status"], "stopped");
    assert!(row["pid"].is_null());
    assert!(!exists(second), "stopped process is reaped, not a zombie");

    // start again on a stopped app, then `all` as a target
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    supd.wait_instance("nap", 0, "nap online again", |p| p["status"] == "online");
    supd.ok(&["delete", "all"]);
    assert!(supd.list().is_empty());
}

#[test]
fn unknown_app_is_a_clear_error() {
    let supd = Supd::new();
    for cmd in ["stop", "restart", "delete", "show"] {
        let err = supd.fails(&[cmd, "ghost"]);
        assert!(
            err.contains("ghost") && err.lines().count() == 1,
            "{cmd}: {err}"
        );
    }
    let err = supd.fails(&["signal", "SIGNOPE", "all"]);
    assert!(err.contains("SIGNOPE"), "{err}");
}

#[test]
fn a_missing_program_fails_naming_the_app() {
    let supd = Supd::new();
    let err = supd.fails(&["start", "./no-such-program", "--name", "nope"]);
    assert!(
        err.contains("nope") && err.contains("no-such-program"),
        "{err}"
    );
    assert!(
        supd.list().is_empty(),
        "refused up front: nothing registered"
    );
}

#[test]
fn signal_reaches_every_instance() {
    let supd = Supd::new();
    let script = supd.script(
        "usr1.sh",
        "trap 'echo got-usr1-$INSTANCE_ID' USR1\necho ready\nwhile :; do sleep 0.05; done",
    );
    let file = one_app(&supd, "sig", &script, "instances = 2");
    supd.ok(&["start", &file]);
    let log = supd.home().join("logs/sig-out.log");
    wait_for(Duration::from_secs(10), "both instances trapping", || {
        (std::fs::read_to_string(&log).ok()?.matches("ready").count() == 2).then_some(())
    });
    supd.ok(&["signal", "SIGUSR1", "sig"]);
    wait_for(
        Duration::from_secs(10),
        "both instances got SIGUSR1",
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            (text.contains("got-usr1-0") && text.contains("got-usr1-1")).then_some(())
        },
    );
    assert!(supd.list().iter().all(|p| p["status"] == "online"));
}

#[test]
fn crash_loop_ends_errored_and_stays_until_a_user_acts() {
    let supd = Supd::new();
    let marker = supd.write("crash", "");
    let runs = supd.work().join("crashy-runs");
    let script = supd.script(
        "crashy.sh",
        &format!(
            "echo run >> {}\n[ -e {} ] && exit 3\nexec sleep 300",
            runs.display(),
            marker.display()
        ),
    );
    let file = one_app(
        &supd,
        "crashy",
        &script,
        "max_restarts = 3\nmin_uptime = \"5s\"",
    );
    supd.ok(&["start", &file]);
    let row = supd.wait_instance("crashy", 0, "errored", |p| p["status"] == "errored");
    assert_eq!(
        row["restarts"], 3,
        "max_restarts unstable restarts, then errored: {row}"
    );
    let show = supd.show("crashy");
    let inst = &show["instances"][0];
    assert_eq!(inst["last_exit"]["code"], 3);
    assert!(
        inst["last_error"].as_str().unwrap().contains("unstable"),
        "{inst}"
    );
    // It stays errored: nothing restarts it behind our back. The clock is a
    // witness app the daemon restarts every 200 ms: fifteen of its runs
    // (three seconds of the daemon's own timers) without a run of crashy.
    let ticks = supd.work().join("witness-runs");
    let witness = supd.script(
        "witness.sh",
        &format!("echo tick >> {}\nexit 1", ticks.display()),
    );
    let file = one_app(
        &supd,
        "witness",
        &witness,
        "restart_delay = 200\nmin_uptime = 0\nmax_restarts = 1000",
    );
    supd.ok(&["start", &file]);
    wait_for(
        Duration::from_secs(20),
        "fifteen runs of the witness",
        || {
            let ticks = std::fs::read_to_string(&ticks).ok()?;
            (ticks.lines().count() >= 15).then_some(())
        },
    );
    let crashy = supd.instance("crashy", 0);
    assert_eq!(crashy["status"], "errored", "{crashy}");
    assert_eq!(crashy["restarts"], 3, "{crashy}");
    let ran = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(
        ran, 4,
        "the first run and three restarts, none after errored"
    );
    // A user acts: it comes back.
    std::fs::remove_file(&marker).unwrap();
    supd.ok(&["restart", "crashy"]);
    supd.wait_instance("crashy", 0, "online after restart", |p| {
        p["status"] == "online"
    });
}

/// The start times (ns since the epoch) each run of an app wrote, once
/// there are `count` of them. A script records one with [`stamp_line`].
fn run_stamps(path: &std::path::Path, count: usize) -> Vec<u64> {
    wait_for(Duration::from_secs(20), &format!("{count} runs"), || {
        let text = std::fs::read_to_string(path).ok()?;
        let v: Vec<u64> = text.lines().filter_map(|l| l.parse().ok()).collect();
        (v.len() >= count).then_some(v)
    })
}

/// The shell line that appends a run's start time to `path`.
fn stamp_line(path: &std::path::Path) -> String {
    format!("date +%s%N >> {}", path.display())
}

/// The gaps between consecutive stamps, in milliseconds.
fn gaps_ms(stamps: &[u64]) -> Vec<u64> {
    stamps
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect()
}

#[test]
fn restart_delay_waits_and_counts() {
    let supd = Supd::new();
    let stamps = supd.work().join("stamps");
    let script = supd.script(
        "blip.sh",
        &format!("{}\nsleep 0.2; exit 1", stamp_line(&stamps)),
    );
    let file = one_app(
        &supd,
        "blip",
        &script,
        "restart_delay = \"1s\"\nmin_uptime = 100",
    );
    supd.ok(&["start", &file]);
    supd.wait_instance("blip", 0, "waiting-restart", |p| {
        p["status"] == "waiting-restart"
    });
    let times = run_stamps(&stamps, 3);
    supd.ok(&["stop", "blip"]);
    // Each run lasts 0.2 s, then waits restart_delay (1 s): a gap of 1.2 s
    // and a little; the 4 s default, or no delay, is far outside.
    let gaps = gaps_ms(&times);
    assert!(
        gaps.iter().all(|g| (1200..2200).contains(g)),
        "gaps between runs {gaps:?} ms, want 1200..2200"
    );
    assert!(supd.instance("blip", 0)["restarts"].as_u64() >= Some(2));
}

#[test]
fn stop_exit_codes_and_autorestart_false_stay_stopped() {
    let supd = Supd::new();
    let done = supd.script("done.sh", "exit 0");
    let file = one_app(&supd, "done", &done, "stop_exit_codes = [0]");
    supd.ok(&["start", &file]);
    let row = supd.wait_instance("done", 0, "stopped", |p| p["status"] == "stopped");
    assert_eq!(row["restarts"], 0);

    let fail = supd.script("fail.sh", "exit 1");
    let file = one_app(&supd, "once", &fail, "autorestart = false");
    supd.ok(&["start", &file]);
    let row = supd.wait_instance("once", 0, "stopped", |p| p["status"] == "stopped");
    assert_eq!(row["restarts"], 0);
    assert_eq!(supd.show("once")["instances"][0]["last_exit"]["code"], 1);
}

#[test]
fn exponential_backoff_grows_between_restarts() {
    let supd = Supd::new();
    let stamps = supd.work().join("stamps");
    let script = supd.script("bo.sh", &format!("{}\nexit 1", stamp_line(&stamps)));
    let file = one_app(
        &supd,
        "bo",
        &script,
        "exp_backoff_restart_delay = 300\nmax_restarts = 50",
    );
    supd.ok(&["start", &file]);
    // Runs at t0, +300, +450, +675, +1012 ms: five stamps. (The 15 s
    // ceiling is the policy's table test: a crash loop takes minutes to
    // reach it.)
    let times = run_stamps(&stamps, 5);
    supd.ok(&["stop", "bo"]);
    let gaps = gaps_ms(&times);
    // Each gap is the back-off for that restart, plus at most 300 ms of
    // spawning: the delay grows x1.5 each time (x1.8 would overshoot the
    // last by 700 ms; no growth undershoots it by 700).
    let backoff = [300, 450, 675, 1012];
    for (n, gap) in gaps.iter().enumerate() {
        assert!(
            (backoff[n]..backoff[n] + 300).contains(gap),
            "gap {n} of {gaps:?} ms, want {} ms and up to 300 ms more",
            backoff[n]
        );
    }
}

#[test]
fn stop_reaches_grandchildren_and_leaves_no_zombie() {
    let supd = Supd::new();
    let child_pid = supd.work().join("grandchild.pid");
    let script = supd.script(
        "tree.sh",
        &format!("sleep 300 &\necho $! > {}\nwait", child_pid.display()),
    );
    let file = one_app(&supd, "tree", &script, "kill_timeout = 500");
    supd.ok(&["start", &file]);
    let grandchild: u32 = wait_for(Duration::from_secs(10), "grandchild pid", || {
        std::fs::read_to_string(&child_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    let leader = pid_of(&supd.instance("tree", 0));
    assert!(alive(grandchild));
    supd.ok(&["stop", "tree"]);
    assert!(!exists(leader), "leader gone and reaped");
    assert!(
        !exists(grandchild),
        "grandchild gone and reaped (no zombie)"
    );
    assert_no_zombies(&supd);
}

#[test]
fn sigkill_after_kill_timeout_for_a_process_ignoring_signals() {
    let supd = Supd::new();
    let script = supd.script(
        "stubborn.sh",
        "trap '' INT TERM\nwhile :; do sleep 0.05; done",
    );
    let file = one_app(
        &supd,
        "stubborn",
        &script,
        "kill_timeout = \"400ms\"\nkill_signal = \"SIGTERM\"",
    );
    supd.ok(&["start", &file]);
    let pid = pid_of(&supd.wait_instance("stubborn", 0, "online", |p| p["status"] == "online"));
    let started = std::time::Instant::now();
    supd.ok(&["stop", "stubborn"]);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "waited kill_timeout before SIGKILL"
    );
    assert!(!exists(pid));
    assert_eq!(
        supd.show("stubborn")["instances"][0]["last_exit"]["signal"],
        9
    );
    assert_no_zombies(&supd);
}

#[test]
fn instances_get_the_spec_environment_the_socket_and_no_other_fd() {
    let supd = Supd::new();
    let script = supd.script(
        "envy.sh",
        "echo \"name=$SUPD_APP_NAME id=$INSTANCE_ID node=$NODE_APP_INSTANCE port=$PORT mine=$MINE fds=$LISTEN_FDS pidok=$([ \"$LISTEN_PID\" = $$ ] && echo yes) names=$LISTEN_FDNAMES\"\nexec sleep 300",
    );
    let port = crate::support::free_port();
    let file = one_app(
        &supd,
        "envy",
        &script,
        &format!(
            "instances = 2\nport = {port}\n[apps.env]\nMINE = \"dev\"\n[apps.env_production]\nMINE = \"prod\""
        ),
    );
    supd.ok(&["start", &file, "--env", "production"]);
    for i in 0..2 {
        let pid = pid_of(&supd.wait_instance("envy", i, "online", |p| p["status"] == "online"));
        let want = ["0", "1", "2", "3"];
        assert_eq!(
            settled_fds(pid, &want),
            want,
            "instance {i} inherited stdio and the socket only"
        );
        let socket = std::fs::read_link(format!("/proc/{pid}/fd/3")).unwrap();
        assert!(
            socket.to_string_lossy().starts_with("socket:"),
            "fd 3 is the listening socket"
        );
        // Its own process group.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let pgrp: u32 = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split(' ')
            .nth(3)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(pgrp, pid);
    }
    let log = supd.home().join("logs/envy-out.log");
    let text = wait_for(Duration::from_secs(10), "both env lines", || {
        let t = std::fs::read_to_string(&log).ok()?;
        (t.lines().count() >= 2).then_some(t)
    });
    for i in 0..2 {
        let want =
            format!("name=envy id={i} node={i} port={port} mine=prod fds=1 pidok=yes names=envy");
        assert!(text.contains(&want), "{want} in {text}");
    }
}

#[test]
fn an_app_without_a_port_inherits_only_stdio() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "plain", "--", "300"]);
    let pid = pid_of(&supd.wait_instance("plain", 0, "online", |p| p["status"] == "online"));
    assert_eq!(settled_fds(pid, &["0", "1", "2"]), ["0", "1", "2"]);
}

#[test]
fn sigterm_to_the_daemon_stops_every_app_first() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "a", "--", "300"]);
    let app = pid_of(&supd.wait_instance("a", 0, "online", |p| p["status"] == "online"));
    let daemon = supd.daemon_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for(Duration::from_secs(10), "daemon exit", || {
        (!alive(daemon)).then_some(())
    });
    assert!(!alive(app), "the app was stopped before the daemon exited");
    let log = std::fs::read_to_string(supd.home().join("supd.log")).unwrap();
    assert!(log.contains("SIGTERM"), "{log}");
}

/// No zombie child of the daemon.
fn assert_no_zombies(supd: &Supd) {
    let zombies = zombie_children(supd.daemon_pid().unwrap());
    assert!(zombies.is_empty(), "zombie children of supd: {zombies:?}");
}

#[test]
fn a_js_script_runs_with_node_like_pm2() {
    let supd = Supd::new();
    supd.write(
        "hello.js",
        "console.log('js says ' + process.argv[2]); setInterval(() => {}, 1000);",
    );
    supd.ok(&["start", "./hello.js", "--", "hi"]);
    let show = supd.show("hello");
    assert_eq!(show["config"]["script"], "node");
    let log = supd.home().join("logs/hello-out.log");
    wait_for(Duration::from_secs(10), "the script's output", || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("js says hi")
            .then_some(())
    });
}

/// Two `delete`s of one app at once both succeed: the second finds the app
/// being deleted by the first (its actor ended under it), which is not a
/// failure. The app takes a moment to stop, so the two overlap.
#[test]
fn two_deletes_of_one_app_at_once_both_succeed() {
    let supd = Supd::new();
    let script = supd.script(
        "slow_stop.sh",
        "trap 'sleep 0.5; exit 0' INT\nwhile :; do sleep 0.05; done\n",
    );
    let file = one_app(&supd, "slow", &script, "kill_timeout = \"5s\"");
    supd.ok(&["start", &file]);
    let pid = pid_of(&supd.wait_instance("slow", 0, "slow online", |p| p["status"] == "online"));
    let args = ["delete", "slow"];
    let outputs: Vec<_> = std::thread::scope(|s| {
        let deletes: Vec<_> = (0..2)
            .map(|_| s.spawn(|| supd.output(supd.cmd(&args), &args)))
            .collect();
        deletes.into_iter().map(|d| d.join().unwrap()).collect()
    });
    for out in outputs {
        assert!(
            out.status.success(),
            "a delete failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(supd.list().is_empty());
    assert!(!alive(pid));
}
