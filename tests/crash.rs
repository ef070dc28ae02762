//! A daemon killed with SIGKILL: its apps keep running (no SIGPIPE), and the
//! next daemon replaces them cleanly, so `list` is true and ports are free.

use std::time::Duration;

use serde_json::Value;

use crate::support::{KillOnDrop, Load, Supd, alive, bin, free_port, get_fresh, wait_for};

fn pids_of(rows: &[Value], name: &str) -> Vec<u32> {
    rows.iter()
        .filter(|r| r["name"] == name)
        .filter_map(|r| r["pid"].as_u64().map(|p| p as u32))
        .collect()
}

fn daemon_log(supd: &Supd) -> String {
    std::fs::read_to_string(supd.home().join("supd.log")).unwrap_or_default()
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_ascii_whitespace().nth(n - 3).map(String::from)
}

#[test]
fn after_sigkill_list_shows_the_truth_and_start_binds_the_port_again() {
    let supd = Supd::new();
    let port = free_port();
    let events = supd.work().join("events");
    let single = supd.script(
        "single.sh",
        &format!(
            "echo \"start $$\" >> {e}\ntrap 'echo \"stop $$\" >> {e}; exit 0' INT\nwhile :; do sleep 1 & wait $!; done",
            e = events.display()
        ),
    );
    let file = supd.write(
        "eco.toml",
        &format!(
            "[[apps]]\nname = \"users\"\nscript = \"{}\"\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\nwait_ready = true\nlisten_timeout = \"10s\"\nkill_timeout = \"5s\"\n\n\
             [[apps]]\nname = \"single\"\nscript = \"{}\"\nmax_instances = 1\nkill_timeout = \"5s\"\n\n\
             [[apps]]\nname = \"idle\"\nscript = \"sleep\"\nargs = [\"300\"]\n",
            bin("user-service").display(),
            single.display()
        ),
    );
    let file = file.to_str().unwrap();
    supd.ok(&["start", file]);
    supd.ok(&["scale", "users", "3"]);
    supd.ok(&["stop", "idle"]);
    wait_for(Duration::from_secs(10), "single to have started", || {
        std::fs::read_to_string(&events)
            .ok()
            .filter(|e| e.contains("start"))
    });
    let old = supd.crash();
    assert_eq!(old.len(), 4, "3 users and single were running");

    // The next command starts a daemon that replaces them before it answers.
    let rows = supd.list();
    let users = pids_of(&rows, "users");
    assert_eq!(users.len(), 3, "the scaled count came back: {rows:?}");
    for row in rows.iter().filter(|r| r["name"] != "idle") {
        assert_eq!(row["status"], "online", "{row}");
    }
    let idle: Vec<_> = rows.iter().filter(|r| r["name"] == "idle").collect();
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0]["status"], "stopped", "a stopped app stays stopped");
    let new = [users, pids_of(&rows, "single")].concat();
    for pid in &old {
        assert!(!new.contains(pid), "{pid} was replaced: {rows:?}");
        assert!(!alive(*pid), "the old process {pid} is gone");
    }
    let (status, _) = get_fresh(port, "/health").expect("the port answers");
    assert_eq!(status, 200);

    // The app capped at one instance never ran twice: the old one stopped
    // (gracefully, by its kill_signal) before the new one started.
    let single_pids = pids_of(&rows, "single");
    let lines: Vec<String> = wait_for(Duration::from_secs(10), "the new single", || {
        let text = std::fs::read_to_string(&events).ok()?;
        (text.lines().count() >= 3).then(|| text.lines().map(String::from).collect())
    });
    let old_single = lines[0].strip_prefix("start ").unwrap().to_string();
    assert_eq!(
        lines,
        [
            format!("start {old_single}"),
            format!("stop {old_single}"),
            format!("start {}", single_pids[0])
        ]
    );

    let out = supd.run(&["start", file]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("users is already online"), "{text}");
    assert!(!text.to_lowercase().contains("in use"), "{text}");
    assert_eq!(pids_of(&supd.list(), "users").len(), 3);
    assert!(
        daemon_log(&supd).contains("did not stop cleanly"),
        "the new daemon says what it did"
    );
}

/// The next daemon keeps the listening sockets of the old instances: under
/// load, a daemon SIGKILL and the takeover fail no request (a refused or
/// reset connection counts), and the app comes back with new pids.
#[test]
fn a_takeover_keeps_the_port_open_and_fails_no_request() {
    let supd = Supd::new();
    let port = free_port();
    let file = supd.write(
        "eco.toml",
        &format!(
            "[[apps]]\nname = \"users\"\nscript = \"{}\"\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\nwait_ready = true\nlisten_timeout = \"10s\"\nkill_timeout = \"5s\"\n",
            bin("user-service").display(),
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let load = Load::start(port, "/health", 4);
    wait_for(Duration::from_secs(10), "requests to be answered", || {
        get_fresh(port, "/health").ok()
    });
    let old = supd.crash();
    assert_eq!(old.len(), 2);
    let rows = supd.list();
    let new = pids_of(&rows, "users");
    assert_eq!(new.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row["status"], "online", "{row}");
    }
    for pid in &old {
        assert!(!new.contains(pid), "{pid} was replaced: {rows:?}");
    }
    // The new instances answer too before the load stops.
    let (status, _) = get_fresh(port, "/health").expect("the port answers");
    assert_eq!(status, 200);
    load.finish_without_failures(50);
    assert!(
        daemon_log(&supd).contains("kept the listening sockets"),
        "{}",
        daemon_log(&supd)
    );
}

#[test]
fn apps_outlive_a_killed_daemon_without_sigpipe_and_what_they_write_meanwhile_is_kept() {
    let supd = Supd::new();
    let count = supd.work().join("count");
    let ticker = supd.script(
        "ticker.sh",
        &format!(
            "i=0\nwhile :; do i=$((i+1)); echo \"tick $i\"; echo $i > {}; sleep 0.005; done",
            count.display()
        ),
    );
    supd.ok(&["start", ticker.to_str().unwrap(), "--name", "ticker"]);
    // Fills its 1 MiB pipe at once when no daemon reads it.
    supd.ok(&["start", "yes", "--name", "flood", "--", "flood"]);
    // (Read while the shell rewrites it, the file can be empty: `None`.)
    let ticked = || -> Option<u64> { std::fs::read_to_string(&count).ok()?.trim().parse().ok() };
    wait_for(Duration::from_secs(10), "the ticker to tick", || {
        ticked().filter(|&n| n > 10)
    });
    let old = supd.crash();
    let at_crash = wait_for(Duration::from_secs(10), "a tick", ticked);

    // With no daemon reading, the apps keep running: the ticker keeps
    // writing, the flood blocks on its full pipe; neither gets SIGPIPE.
    let last = wait_for(
        Duration::from_secs(20),
        "200 ticks without a daemon",
        || ticked().filter(|&n| n >= at_crash + 200),
    );
    for &pid in &old {
        assert!(alive(pid), "{pid} survived the daemon");
    }
    let flood = old[1];
    assert_eq!(
        stat_field(flood, 3).as_deref(),
        Some("S"),
        "the flood waits on its full pipe"
    );

    let rows = supd.list();
    for row in &rows {
        assert_eq!(row["status"], "online", "{row}");
        assert!(
            !old.contains(&(row["pid"].as_u64().unwrap() as u32)),
            "{row}"
        );
    }
    for &pid in &old {
        assert!(!alive(pid), "{pid} was replaced");
    }
    // What the ticker wrote while no daemon ran reached its log file. (A
    // line the killed daemon had read but not yet written died with it.)
    let log = supd.home().join("logs/ticker-out.log");
    let text = wait_for(Duration::from_secs(10), "the ticks of the gap", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains(&format!("tick {last}\n")).then_some(text)
    });
    let lines: std::collections::HashSet<&str> = text.lines().collect();
    let lost: Vec<u64> = (at_crash + 1..=last)
        .filter(|n| !lines.contains(format!("tick {n}").as_str()))
        .collect();
    assert!(lost.is_empty(), "ticks lost: {lost:?}");
}

#[test]
fn a_corrupt_state_file_is_reported_and_the_leftovers_still_stop() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    let old = supd.crash();
    std::fs::write(
        supd.home().join("state.json"),
        b"{\"version\": 1, \"apps\": [",
    )
    .unwrap();
    // Nothing can be brought back, and nothing is left running: the truth is
    // an empty list.
    assert_eq!(supd.list(), Vec::<Value>::new());
    assert!(!alive(old[0]), "found by its pipe, and stopped");
    let log = daemon_log(&supd);
    let line = log
        .lines()
        .find(|l| l.contains("state.json is corrupt or truncated"))
        .unwrap_or_else(|| panic!("one clear line in supd.log:\n{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_recorded_pid_that_is_another_process_now_is_left_alone() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    let old = supd.crash()[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(old as i32), None);
    // Another process, leading its own group, that the state file now names
    // (as if the kernel had given it the recorded pid): same pid, another
    // start time. (Set here: start times count 10 ms ticks, and this one may
    // start within the tick of the process it stands in for.)
    let other = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let other = KillOnDrop(other);
    let path = supd.home().join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(state["processes"][0]["pid"], old);
    let started: u64 = stat_field(other.0.id(), 22).unwrap().parse().unwrap();
    state["processes"][0]["pid"] = other.0.id().into();
    state["processes"][0]["start_time"] = (started - 1).into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

    let rows = supd.list();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "online", "nap was brought back");
    assert!(alive(other.0.id()), "the other process was left alone");
    assert!(daemon_log(&supd).contains("another process now"));
}

#[test]
fn a_clean_stop_leaves_no_state_file_and_restores_nothing() {
    let supd = Supd::new();
    let state = supd.home().join("state.json");
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    assert!(state.exists(), "kept while the daemon runs");
    supd.ok(&["kill"]);
    assert!(!state.exists());

    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    let daemon = supd.daemon_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(daemon as i32), None);
    assert!(!state.exists(), "SIGTERM is a clean stop too");
    assert!(supd.list().is_empty(), "a clean stop is not a crash");
}

/// What the state file records of `name`: its instance count and the pids
/// of its processes, sorted.
fn recorded(supd: &Supd, name: &str) -> (u64, Vec<u32>) {
    let state: Value =
        serde_json::from_slice(&std::fs::read(supd.home().join("state.json")).unwrap()).unwrap();
    let app = state["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["config"]["name"] == name)
        .unwrap_or_else(|| panic!("{name} is recorded: {state}"));
    let mut pids: Vec<u32> = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["app"] == name)
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect();
    pids.sort_unstable();
    (app["config"]["instances"].as_u64().unwrap(), pids)
}

/// A command that changes an app returns once the state file shows the
/// change (the state file is written from the published views, without
/// asking each app): read at once, with no wait, the file holds the scaled
/// count and exactly the processes `list` shows, after a `scale` and after
/// a `reload` that replaced every one; the other app is still recorded.
#[test]
fn the_state_file_shows_a_scale_and_a_reload_as_soon_as_they_return() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "other", "--", "300"]);
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    let listed = |supd: &Supd| {
        let mut pids = pids_of(&supd.list(), "nap");
        pids.sort_unstable();
        pids
    };

    supd.ok(&["scale", "nap", "3"]);
    let (count, scaled) = recorded(&supd, "nap");
    assert_eq!(count, 3, "the scaled count is recorded");
    assert_eq!(scaled.len(), 3, "{scaled:?}");
    assert_eq!(scaled, listed(&supd));

    supd.ok(&["reload", "nap"]);
    let (count, reloaded) = recorded(&supd, "nap");
    assert_eq!(count, 3);
    assert_eq!(reloaded, listed(&supd));
    assert!(
        reloaded.iter().all(|pid| !scaled.contains(pid)),
        "the file shows the new processes: {scaled:?} then {reloaded:?}"
    );
    assert_eq!(recorded(&supd, "other").1, pids_of(&supd.list(), "other"));
}
