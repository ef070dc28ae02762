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
    let show = wait_for(Duration::from_secs(30), "a memory restart", || {
        let show = supd.show("hog");
        show["instances"][0]["restart_reason"]
            .as_str()
            .is_some()
            .then_some(show)
    });
    let reason = show["instances"][0]["restart_reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.starts_with("memory limit 150M exceeded: "),
        "{reason}"
    );
    assert!(show["instances"][0]["restarts"].as_u64() >= Some(1));
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

#[test]
fn cron_restart_fires_and_show_says_when() {
    let supd = Supd::new();
    let file = supd.write(
        "cron.toml",
        "[[apps]]\nname = \"tick\"\nscript = \"sleep\"\nargs = [\"300\"]\ncron_restart = \"* * * * *\"\n",
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let next = supd.show("tick")["next_cron_restart"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(next.contains('T'), "an RFC 3339 time: {next}");
    // Every minute: the first restart comes within 60 s.
    wait_for(Duration::from_secs(75), "the cron restart", || {
        (supd.instance("tick", 0)["restarts"] == 1).then_some(())
    });
    assert_eq!(supd.instance("tick", 0)["status"], "online");
}

#[test]
fn metrics_match_list_json() {
    let supd = Supd::new();
    let port = free_port();
    let file = supd.write(
        "m.toml",
        &format!(
            "[daemon]\nmetrics = \"127.0.0.1:{port}\"\n\n[[apps]]\nname = \"nap\"\nscript = \"sleep\"\nargs = [\"300\"]\ninstances = 2\n"
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    supd.ok(&["restart", "nap"]);
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    let list = supd.list();
    let sample = |name: &str, instance: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("instance") == Some(instance))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    for row in &list {
        let i = row["instance"].to_string();
        assert_eq!(
            sample("supd_instance_restarts_total", &i),
            Some(1.0),
            "{text}"
        );
        assert!(sample("supd_instance_memory_bytes", &i).is_some());
        assert!(sample("supd_instance_cpu_percent", &i).is_some());
        assert!(sample("supd_instance_uptime_seconds", &i).is_some());
    }
    let online = scrape
        .samples
        .iter()
        .find(|s| s.metric == "supd_app_online_instances")
        .unwrap();
    assert!(matches!(online.value, prometheus_parse::Value::Gauge(v) if v == 2.0));
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "supd_daemon_memory_bytes")
    );
    let json: Vec<Value> = ureq::get(&format!("http://127.0.0.1:{port}/json"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let names = |rows: &[Value]| {
        rows.iter()
            .map(|r| (r["name"].clone(), r["instance"].clone(), r["pid"].clone()))
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
    let show = wait_for(Duration::from_secs(20), "a health restart", || {
        let show = supd.show("h");
        show["instances"][0]["restart_reason"]
            .as_str()
            .is_some()
            .then_some(show)
    });
    std::fs::remove_file(&sick).unwrap();
    let reason = show["instances"][0]["restart_reason"].as_str().unwrap();
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
    let show = wait_for(Duration::from_secs(20), "a health restart", || {
        let show = supd.show("users");
        show["instances"][0]["restart_reason"]
            .as_str()
            .is_some()
            .then_some(show)
    });
    let reason = show["instances"][0]["restart_reason"].as_str().unwrap();
    assert!(reason.contains("404"), "{reason}");
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
    let show = wait_for(Duration::from_secs(20), "a watchdog restart", || {
        let show = supd.show("wd");
        show["instances"][0]["restart_reason"]
            .as_str()
            .is_some()
            .then_some(show)
    });
    assert!(
        show["instances"][0]["restart_reason"]
            .as_str()
            .unwrap()
            .starts_with("watchdog"),
        "{show}"
    );
    let out = std::fs::read_to_string(supd.home().join("logs/wd-out.log")).unwrap();
    assert!(out.contains("usec 400000"), "{out}");
    // Keep-alives kept it alive: the first process got to its silence.
    let first_run = out.split("usec").nth(1).unwrap();
    assert!(
        first_run.lines().any(|l| l == "silent"),
        "restarted only after it went silent: {out}"
    );
}
