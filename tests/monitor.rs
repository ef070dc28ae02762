//! Monitoring: samples, memory-limit restarts, cron restarts, metrics.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Load, Supd, bin, free_port, wait_for};

/// A Python program that grows by 20 MB every 0.1 s, printing how many
/// chunks it holds.
const HOG: &str = "import sys, time\nchunks = []\nwhile True:\n    chunks.append(b'x' * (20 * 1024 * 1024))\n    print(len(chunks), flush=True)\n    time.sleep(0.1)\n";

#[test]
fn list_reports_cpu_and_memory_of_the_whole_tree() {
    let supd = Supd::new();
    // A shell wrapper whose child burns CPU and holds memory: counted to the instance.
    let script = supd.script(
        "tree.sh",
        "python3 -c \"b = b'x' * (50 * 1024 * 1024)\nwhile True: pass\" &\nwait",
    );
    supd.ok(&["start", script.to_str().unwrap(), "--name", "tree"]);
    let row = supd.wait_instance("tree", 0, "CPU and 50 MB measured", |p| {
        p["cpu"].as_f64() > Some(20.0) && p["memory"].as_u64() > Some(50 * 1024 * 1024)
    });
    assert_eq!(row["status"], "online");
    let text = supd.ok(&["list"]);
    assert!(text.contains("tree") && text.contains("mb"), "{text}");
}

#[test]
fn a_memory_hog_is_restarted_within_about_a_second_with_the_reason_shown() {
    let supd = Supd::new();
    let hog = supd.write("hog.py", HOG);
    let file = supd.write(
        "hog.toml",
        &format!(
            "[[apps]]\nname = \"hog\"\nscript = \"python3\"\nargs = [\"{}\"]\nmax_memory_restart = \"150M\"\nkill_timeout = 500\n",
            hog.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let reason = restart_reason(&supd, "hog", "a memory restart", Duration::from_secs(30));
    assert!(
        reason.starts_with("memory limit 150M exceeded: "),
        "{reason}"
    );
    assert!(supd.show("hog")["instances"][0]["restarts"].as_u64() >= Some(1));
    // It crosses 150M at its 8th chunk; growing 200 MB/s, a reaction within
    // about a second means it never got far beyond that (PM2's 30 s check
    // would let it reach gigabytes).
    let out = std::fs::read_to_string(supd.home().join("logs/hog-out.log")).unwrap();
    let peak = out
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .max()
        .unwrap();
    assert!(
        peak <= 20,
        "the hog reached {peak} chunks ({} MB) before its restart",
        peak * 20
    );
    let log = std::fs::read_to_string(supd.home().join("supd.log")).unwrap();
    assert!(
        log.contains("memory limit 150M exceeded"),
        "the daemon log says why"
    );
    let text = supd.ok(&["show", "hog"]);
    assert!(text.contains("memory limit 150M exceeded"), "{text}");
}

#[test]
fn a_cluster_memory_restart_fails_no_request() {
    let supd = Supd::new();
    let port = free_port();
    // Every instance is over this limit: each sample replaces one the reload way.
    let file = supd.write(
        "users.toml",
        &format!(
            "[daemon]\nsample_interval = \"200ms\"\n\n[[apps]]\nname = \"users\"\nscript = \"{}\"\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\nwait_ready = true\nmax_memory_restart = \"1M\"\n",
            bin("user-service").display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let load = Load::start(port, "/health", 4);
    wait_for(Duration::from_secs(30), "three memory restarts", || {
        let restarts: u64 = supd
            .list()
            .iter()
            .map(|p| p["restarts"].as_u64().unwrap())
            .sum();
        (restarts >= 3).then_some(())
    });
    load.finish_without_failures(21);
}

/// The restart reason `show` gives for instance 0 of `app`, once it has one.
fn restart_reason(supd: &Supd, app: &str, what: &str, limit: Duration) -> String {
    wait_for(limit, what, || {
        supd.show(app)["instances"][0]["restart_reason"]
            .as_str()
            .map(str::to_owned)
    })
}

/// Nanoseconds since the epoch, now.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn cron_restart_fires_at_the_scheduled_time_and_show_says_when() {
    let supd = Supd::new();
    let stamps = supd.work().join("stamps");
    let script = supd.script(
        "tick.sh",
        &format!("date +%s%N >> {}\nexec sleep 300", stamps.display()),
    );
    let file = supd.write(
        "cron.toml",
        &format!(
            "[[apps]]\nname = \"tick\"\nscript = \"{}\"\ncron_restart = \"* * * * *\"\n",
            script.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let asked = now_ns();
    let next = supd.show("tick")["next_cron_restart"]
        .as_str()
        .unwrap()
        .to_string();
    let stamps_now = |count: usize| {
        let text = std::fs::read_to_string(&stamps).ok()?;
        let v: Vec<u64> = text.lines().filter_map(|l| l.parse().ok()).collect();
        (v.len() >= count).then_some(v)
    };
    let first = wait_for(
        Duration::from_secs(10),
        "the first run's start time",
        || stamps_now(1),
    )[0];
    // "* * * * *": the first minute boundary after the first run started.
    const MINUTE: u64 = 60_000_000_000;
    let due = (first / MINUTE + 1) * MINUTE;
    let shown = rfc3339_ns(&next);
    if asked < due {
        assert_eq!(shown, due, "show's next_cron_restart {next}");
    } else {
        assert_eq!(shown, due + MINUTE, "asked after the first was due: {next}");
    }
    let runs = wait_for(Duration::from_secs(75), "the cron restart", || {
        stamps_now(2)
    });
    let late = Duration::from_nanos(runs[1].saturating_sub(due));
    assert!(
        runs[1] >= due && late < Duration::from_millis(2500),
        "the restart's process started {late:?} after the minute, or before it"
    );
    let row = supd.instance("tick", 0);
    assert_eq!(row["status"], "online");
    assert_eq!(row["restarts"], 1, "{row}");
}

/// An RFC 3339 time (as `show` prints it) in nanoseconds since the epoch,
/// read by `date` so the test needs no calendar of its own.
fn rfc3339_ns(time: &str) -> u64 {
    let out = std::process::Command::new("date")
        .args(["-d", time, "+%s%N"])
        .output()
        .expect("date");
    assert!(out.status.success(), "date -d {time}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn metrics_match_list_json() {
    // Values that differ per instance and per app, so a mixed-up label shows:
    // nap:0 restarted once, nap:1 once more by a crash, idle stopped.
    let (supd, port) = crate::metrics::serving();
    let victim = supd.instance("nap", 1)["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    supd.wait_instance("nap", 1, "nap:1 restarted and sampled", |p| {
        p["restarts"] == 2 && p["status"] == "online" && p["memory"].as_u64() > Some(0)
    });
    supd.wait_instance("nap", 0, "nap:0 sampled", |p| {
        p["memory"].as_u64() > Some(0)
    });

    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let list = supd.list();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    let value = |s: &prometheus_parse::Sample| match s.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    };
    // The samples of `metric` whose labels include every pair of `labels`.
    let samples = |metric: &str, labels: &[(&str, &str)]| -> Vec<f64> {
        scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(value)
            .collect()
    };
    let one = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        match samples(metric, labels)[..] {
            [v] => v,
            ref other => panic!("{metric} {labels:?}: {other:?} in\n{text}"),
        }
    };
    assert_eq!(list.len(), 3, "{list:?}");
    for row in &list {
        let (app, i) = (row["name"].as_str().unwrap(), row["instance"].to_string());
        let at = [("app", app), ("instance", i.as_str())];
        let what = format!("{app}:{i} {row}\n{text}");
        assert_eq!(
            one("supd_instance_restarts_total", &at),
            row["restarts"].as_f64().unwrap(),
            "{what}"
        );
        let status = row["status"].as_str().unwrap();
        assert_eq!(
            samples("supd_instance_status", &at),
            [1.0],
            "one status, {status}: {what}"
        );
        one(
            "supd_instance_status",
            &[("app", app), ("instance", &i), ("status", status)],
        );
        // Both read the monitor's samples; one may be a second newer.
        let (metric, listed) = (
            one("supd_instance_memory_bytes", &at),
            row["memory"].as_f64().unwrap(),
        );
        assert!(
            (metric - listed).abs() <= (listed * 0.1).max(512.0 * 1024.0),
            "memory {metric} in /metrics, {listed} in list: {what}"
        );
        let uptime = one("supd_instance_uptime_seconds", &at);
        let listed = row["uptime_ms"].as_f64().unwrap() / 1000.0;
        assert!(
            (uptime - listed).abs() < 5.0,
            "uptime {uptime} s in /metrics, {listed} s in list: {what}"
        );
    }
    for (app, desired, online) in [("nap", 2.0, 2.0), ("idle", 1.0, 0.0)] {
        let counted = list
            .iter()
            .filter(|r| r["name"] == app && r["status"] == "online")
            .count() as f64;
        assert_eq!(counted, online, "{list:?}");
        assert_eq!(
            one("supd_app_online_instances", &[("app", app)]),
            online,
            "{text}"
        );
        assert_eq!(
            one("supd_app_desired_instances", &[("app", app)]),
            desired,
            "{text}"
        );
    }
    assert!(one("supd_daemon_memory_bytes", &[]) > 0.0, "{text}");
    let json: Vec<Value> = ureq::get(&format!("http://127.0.0.1:{port}/json"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let names = |rows: &[Value]| {
        rows.iter()
            .map(|r| {
                (
                    r["name"].clone(),
                    r["instance"].clone(),
                    r["pid"].clone(),
                    r["status"].clone(),
                    r["restarts"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&json), names(&list));
}

#[test]
fn a_failing_health_check_command_restarts_the_instance() {
    let supd = Supd::new();
    let sick = supd.work().join("sick");
    let file = supd.write(
        "h.toml",
        &format!(
            "[[apps]]\nname = \"h\"\nscript = \"sleep\"\nargs = [\"300\"]\nhealth_check = \"test ! -e {} && test \\\"$INSTANCE_ID\\\" = 0\"\nhealth_interval = \"200ms\"\nhealth_timeout = \"2s\"\nhealth_retries = 2\n",
            sick.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let first = supd.instance("h", 0)["pid"].clone();
    std::fs::write(&sick, "").unwrap();
    let reason = restart_reason(&supd, "h", "a health restart", Duration::from_secs(20));
    std::fs::remove_file(&sick).unwrap();
    assert!(reason.contains("health check failed 2 times"), "{reason}");
    assert_ne!(supd.instance("h", 0)["pid"], first);
}

#[test]
fn a_failing_http_health_check_restarts_a_single_instance() {
    let supd = Supd::new();
    let port = free_port();
    let file = supd.write(
        "hh.toml",
        &format!(
            "[[apps]]\nname = \"users\"\nscript = \"{}\"\nport = {port}\nwait_ready = true\nhealth_check = \"http://127.0.0.1:{{port}}/no-such-route\"\nhealth_interval = \"200ms\"\nhealth_retries = 2\n",
            bin("user-service").display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let reason = restart_reason(&supd, "users", "a health restart", Duration::from_secs(20));
    assert!(reason.contains("404"), "{reason}");
}

/// A cluster app of user-service with the debug routes on, whose
/// `health_check` GETs `/debug/slow?ms={check_ms}` every 100 ms: each check
/// prints one line in the app's log, so the test counts them.
fn checked_cluster(supd: &Supd, port: u16, check_ms: u64, timeout: &str) {
    let file = supd.write(
        "checked.toml",
        &format!(
            "[[apps]]\nname = \"users\"\nscript = \"{}\"\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\nwait_ready = true\nhealth_check = \"http://127.0.0.1:{{port}}/debug/slow?ms={check_ms}\"\nhealth_interval = \"100ms\"\nhealth_timeout = \"{timeout}\"\nhealth_retries = 2\n[apps.env]\nSERVICE_DEBUG_ROUTES = \"1\"\n",
            bin("user-service").display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
}

/// How many health checks reached the app (see [`checked_cluster`]).
fn checks_served(supd: &Supd) -> usize {
    std::fs::read_to_string(supd.home().join("logs/users-out.log"))
        .unwrap_or_default()
        .matches("debug: slow request started")
        .count()
}

#[test]
fn a_healthy_multi_instance_app_is_left_alone_under_load() {
    let supd = Supd::new();
    let port = free_port();
    checked_cluster(&supd, port, 1, "2s");
    let pids: Vec<Value> = supd.list().iter().map(|r| r["pid"].clone()).collect();
    let load = Load::start(port, "/health", 4);
    // Ten answered checks: five times the two failures that would replace.
    wait_for(Duration::from_secs(20), "ten health checks", || {
        (checks_served(&supd) >= 10).then_some(())
    });
    load.finish_without_failures(20);
    let rows = supd.list();
    assert_eq!(
        rows.iter().map(|r| r["pid"].clone()).collect::<Vec<_>>(),
        pids,
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r["restarts"] == 0 && r["status"] == "online"),
        "{rows:?}"
    );
    let log = std::fs::read_to_string(supd.home().join("supd.log")).unwrap();
    assert!(!log.contains("health check failed"), "{log}");
}

#[test]
fn a_slow_http_check_times_out_and_reloads_every_instance_without_failing_a_request() {
    let supd = Supd::new();
    let port = free_port();
    // Each check is answered after 1 s, five times health_timeout.
    checked_cluster(&supd, port, 1000, "200ms");
    let load = Load::start(port, "/health", 4);
    wait_for(Duration::from_secs(30), "both instances replaced", || {
        let rows = supd.list();
        let replaced = rows
            .iter()
            .filter(|r| r["status"] == "online" && r["restarts"].as_u64() >= Some(1))
            .count();
        (replaced == 2).then_some(())
    });
    // Twenty answers of our own beside the load: it had time to send many.
    crate::cluster::spread(port, 20);
    load.finish_without_failures(20);
    let log = std::fs::read_to_string(supd.home().join("supd.log")).unwrap();
    assert!(
        log.contains("no answer within 200 ms") && log.contains("reloading the app"),
        "{log}"
    );
}

#[test]
fn a_hung_health_check_times_out_counts_as_a_failure_and_is_killed() {
    let supd = Supd::new();
    let pids = supd.work().join("check-pids");
    let file = supd.write(
        "hung.toml",
        &format!(
            "[[apps]]\nname = \"h\"\nscript = \"sleep\"\nargs = [\"300\"]\nhealth_check = \"echo $$ >> {}; exec sleep 300\"\nhealth_interval = \"100ms\"\nhealth_timeout = \"300ms\"\nhealth_retries = 2\n",
            pids.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let first = supd.instance("h", 0)["pid"].clone();
    let reason = restart_reason(&supd, "h", "a health restart", Duration::from_secs(20));
    assert!(
        reason.contains("health check failed 2 times")
            && reason.contains("no answer within 300 ms"),
        "{reason}"
    );
    assert_ne!(supd.instance("h", 0)["pid"], first);
    // The two checks that hung were killed at their timeout.
    let hung: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .take(2)
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(hung.len(), 2);
    wait_for(Duration::from_secs(5), "the hung checks killed", || {
        hung.iter()
            .all(|&p| !crate::support::alive(p))
            .then_some(())
    });
}

#[test]
fn a_silent_watchdog_restarts_the_instance() {
    let supd = Supd::new();
    // Ready, five keep-alives 100 ms apart, then silence.
    let app = supd.write(
        "wd.py",
        "import os, socket, time\naddr = os.environ['NOTIFY_SOCKET']\nif addr.startswith('@'):\n    addr = '\\0' + addr[1:]\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.sendto(b'READY=1', addr)\nprint('usec', os.environ['WATCHDOG_USEC'], flush=True)\nfor i in range(5):\n    time.sleep(0.1)\n    s.sendto(b'WATCHDOG=1', addr)\n    print('ping', i, flush=True)\nprint('silent', flush=True)\ntime.sleep(300)\n",
    );
    let file = supd.write(
        "wd.toml",
        &format!(
            "[[apps]]\nname = \"wd\"\nscript = \"python3\"\nargs = [\"{}\"]\nwait_ready = true\nwatchdog = \"400ms\"\nkill_timeout = 200\n",
            app.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let reason = restart_reason(&supd, "wd", "a watchdog restart", Duration::from_secs(20));
    assert!(reason.starts_with("watchdog"), "{reason}");
    let out = std::fs::read_to_string(supd.home().join("logs/wd-out.log")).unwrap();
    assert!(out.contains("usec 400000"), "{out}");
    // Keep-alives kept it alive: the first process got to its silence.
    let first_run = out.split("usec").nth(1).unwrap();
    assert!(
        first_run.lines().any(|l| l == "silent"),
        "restarted only after it went silent: {out}"
    );
}
