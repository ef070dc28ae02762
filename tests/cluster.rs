//! Cluster mode: the daemon-owned socket, readiness, reload, scale, guards.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Load, Supd, alive, bin, fixture, free_port, get_fresh, wait_for};

/// An ecosystem file running the user-service binary (which takes fd 3 and
/// sends READY=1) in cluster mode.
pub(crate) fn cluster_file(
    supd: &Supd,
    name: &str,
    port: u16,
    instances: u32,
    extra: &str,
) -> String {
    cluster_file_of(supd, name, &bin("user-service"), port, instances, extra)
}

/// An ecosystem file like [`cluster_file`] running `script` (which must
/// end up in user-service, or another program that says READY=1).
fn cluster_file_of(
    supd: &Supd,
    name: &str,
    script: &std::path::Path,
    port: u16,
    instances: u32,
    extra: &str,
) -> String {
    let body = format!(
        "[[apps]]\nname = \"{name}\"\nscript = \"{}\"\nexec_mode = \"cluster\"\ninstances = {instances}\nport = {port}\nwait_ready = true\nlisten_timeout = \"10s\"\nkill_timeout = \"5s\"\n{extra}\n",
        script.display()
    );
    supd.write(&format!("{name}.toml"), &body)
        .display()
        .to_string()
}

fn online_pids(supd: &Supd, name: &str) -> Vec<u64> {
    let mut pids: Vec<u64> = supd
        .list()
        .iter()
        .filter(|p| p["name"] == name && p["status"] == "online")
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    pids.sort();
    pids
}

pub(crate) fn wait_online(supd: &Supd, name: &str, n: usize) -> Vec<u64> {
    wait_for(
        Duration::from_secs(20),
        &format!("{n} online instances of {name}"),
        || {
            let pids = online_pids(supd, name);
            (pids.len() == n).then_some(pids)
        },
    )
}

/// Which instance answered, for `count` fresh connections (each must be
/// answered 200).
pub(crate) fn spread(port: u16, count: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..count {
        let (status, body) = get_fresh(port, "/health").expect("request");
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        *seen
            .entry(v["instance"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    seen
}

#[test]
fn instances_share_the_daemon_socket_and_balance() {
    let supd = Supd::new();
    let port = free_port();
    let file = cluster_file(&supd, "users", port, 3, "");
    supd.ok(&["start", &file]);
    // `start` returns once every instance said READY=1: no polling needed.
    let rows: Vec<Value> = supd.list();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row["status"], "online", "{row}");
        assert_eq!(row["mode"], "cluster");
        assert_eq!(row["port"], port);
    }
    let seen = spread(port, 150);
    for i in 0..3 {
        let n = seen.get(&format!("instance-{i}")).copied().unwrap_or(0);
        assert!(
            n >= 25,
            "every instance serves at least half its fair share: {seen:?}"
        );
    }
}

#[test]
fn zero_loss_through_reloads_scaling_and_a_killed_worker() {
    let supd = Supd::new();
    let port = free_port();
    let file = cluster_file(&supd, "users", port, 3, "");
    supd.ok(&["start", &file]);
    let before = wait_online(&supd, "users", 3);

    let load = Load::start(port, "/health", 6);
    let out = supd.ok(&["reload", "users"]);
    assert_eq!(
        out.matches("online").count(),
        3,
        "progress per instance: {out}"
    );
    supd.ok(&["reload", "users"]);
    let reloaded = wait_online(&supd, "users", 3);
    assert!(
        reloaded.iter().all(|p| !before.contains(p)),
        "every pid replaced"
    );

    supd.ok(&["scale", "users", "+2"]);
    assert_eq!(online_pids(&supd, "users").len(), 5);
    supd.ok(&["scale", "users", "2"]);
    assert_eq!(online_pids(&supd, "users").len(), 2);

    load.finish_without_failures(101);

    // A SIGKILLed worker: requests it was holding die with it (no supervisor
    // can save those), but new connections keep being served by the others
    // through the held socket while it is replaced.
    let victim = online_pids(&supd, "users")[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let load = Load::start(port, "/health", 6);
    wait_for(
        Duration::from_secs(20),
        "the killed worker replaced",
        || {
            let pids = online_pids(&supd, "users");
            (pids.len() == 2 && !pids.contains(&victim)).then_some(())
        },
    );
    // Twenty answers of our own while the load runs beside them: the load
    // had time to send many too, and must have been served.
    spread(port, 20);
    load.finish_without_failures(20);
    let restarts: Vec<u64> = supd
        .list()
        .iter()
        .map(|p| p["restarts"].as_u64().unwrap())
        .collect();
    // Instances 0 and 1 (the survivors of the scale-down) were reloaded
    // twice each, and one of them crashed once.
    assert_eq!(
        restarts.iter().sum::<u64>(),
        5,
        "two reloads of two instances and the crash, once each: {restarts:?}"
    );
}

#[test]
fn a_failed_reload_keeps_the_old_instances_serving() {
    let supd = Supd::new();
    let port = free_port();
    let file = cluster_file(&supd, "users", port, 2, "");
    supd.ok(&["start", &file]);
    let before = wait_online(&supd, "users", 2);
    // The new config's program never says READY=1.
    let never = supd.script("never-ready.sh", "exec sleep 300");
    let broken = supd.write(
        "broken.toml",
        &format!(
            "[[apps]]\nname = \"users\"\nscript = \"{}\"\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\nwait_ready = true\nlisten_timeout = \"700ms\"\n",
            never.display()
        ),
    );
    let err = supd.fails(&["reload", broken.to_str().unwrap()]);
    assert!(
        err.contains("users") && err.contains("instance 0") && err.contains("listen_timeout"),
        "{err}"
    );
    assert_eq!(
        online_pids(&supd, "users"),
        before,
        "the old pids keep serving"
    );
    assert_eq!(supd.list().len(), 2, "the failed new instance is gone");
    assert_eq!(get_fresh(port, "/health").unwrap().0, 200);
}

#[test]
fn max_instances_guards_scale_start_and_reload_and_capped_apps_reload_stop_then_start() {
    let supd = Supd::new();
    let port = free_port();
    let reason = "ports are allocated from an in-memory set";
    let file = locked_cluster_file(
        &supd,
        "solo",
        port,
        &format!("max_instances = 1\nmax_instances_reason = \"{reason}\""),
    );
    supd.ok(&["start", &file]);
    let first = wait_online(&supd, "solo", 1)[0];
    for count in ["2", "+1"] {
        let err = supd.fails(&["scale", "solo", count]);
        assert!(err.contains("solo") && err.contains(reason), "{err}");
    }
    let too_many = cluster_file(
        &supd,
        "solo2",
        port,
        2,
        &format!("max_instances = 1\nmax_instances_reason = \"{reason}\""),
    );
    let err = supd.fails(&["start", &too_many]);
    assert!(err.contains(reason), "{err}");
    let err = supd.fails(&["reload", &too_many]);
    assert!(err.contains(reason), "{err}");

    // Reload stop-then-start: the old process is gone before the new one
    // exists, and clients queued on the held socket are served after.
    // Each process holds a lock on one file for its whole life and takes it
    // without waiting: a process started while another still ran records
    // the overlap.
    let load = Load::start(port, "/health", 3);
    supd.ok(&["reload", "solo"]);
    let second = wait_online(&supd, "solo", 1)[0];
    assert_ne!(first, second);
    assert!(!alive(first as u32));
    supd.ok(&["reload", "solo"]);
    wait_online(&supd, "solo", 1);
    spread(port, 20);
    load.finish_without_failures(20);
    let runs = std::fs::read_to_string(supd.work().join("solo-runs")).unwrap();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        ["alone"; 3],
        "the first process and two reloads, each started alone"
    );
}

/// An ecosystem file like [`cluster_file`] whose processes each hold a
/// lock on `NAME.lock` for their life (taken before the service starts,
/// kept by it through exec), and append to `NAME-runs` whether they got it
/// at once (`alone`) or found it held (`overlap`).
fn locked_cluster_file(supd: &Supd, name: &str, port: u16, extra: &str) -> String {
    let work = supd.work();
    let script = supd.script(
        &format!("{name}-locked.sh"),
        &format!(
            "exec 9> {lock}\nif flock -n 9; then echo alone; else echo overlap; fi >> {runs}\nexec {service}",
            lock = work.join(format!("{name}.lock")).display(),
            runs = work.join(format!("{name}-runs")).display(),
            service = bin("user-service").display()
        ),
    );
    cluster_file_of(supd, name, &script, port, 1, extra)
}

#[test]
fn reload_from_a_file_rolls_new_env_and_instance_count() {
    let supd = Supd::new();
    let port = free_port();
    let file = cluster_file(&supd, "users", port, 2, "");
    supd.ok(&["start", &file]);
    wait_online(&supd, "users", 2);
    let load = Load::start(port, "/health", 4);
    let bigger = cluster_file(&supd, "users", port, 3, "[apps.env]\nFLAVOUR = \"new\"");
    let out = supd.ok(&["reload", &bigger]);
    assert!(out.contains("users[2]"), "{out}");
    wait_online(&supd, "users", 3);
    spread(port, 20);
    load.finish_without_failures(20);
    assert_eq!(supd.show("users")["config"]["env"]["FLAVOUR"], "new");
}

#[test]
fn a_node_app_using_pm2s_process_send_ready_reloads_under_load() {
    let supd = Supd::new();
    let port = free_port();
    let script = fixture("ready.js");
    let file = supd.write(
        "node.toml",
        &format!(
            "[[apps]]\nname = \"web\"\nscript = \"node\"\nargs = [\"{}\"]\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\nwait_ready = true\nlisten_timeout = \"10s\"\n",
            script.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let rows = supd.list();
    assert!(
        rows.iter().all(|r| r["status"] == "online"),
        "ready through process.send: {rows:?}"
    );
    let load = Load::start(port, "/", 4);
    for _ in 0..3 {
        supd.ok(&["reload", "web"]);
    }
    load.finish_without_failures(51);
}

#[test]
fn an_unmodified_pm2_style_node_app_runs_in_cluster_mode_and_reloads_under_load() {
    let supd = Supd::new();
    let port = free_port();
    let script = fixture("unmodified.js");
    let file = supd.write(
        "plain.toml",
        &format!(
            "[[apps]]\nname = \"plain\"\nscript = \"node\"\nargs = [\"{}\"]\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\nwait_ready = true\nlisten_timeout = \"10s\"\n",
            script.display()
        ),
    );
    // Ready means the preload took fd 3 for listen(PORT) and said so.
    supd.ok(&["start", file.to_str().unwrap()]);
    assert!(supd.list().iter().all(|r| r["status"] == "online"));
    let seen = spread(port, 60);
    assert_eq!(
        seen.len(),
        2,
        "both instances serve on the shared port: {seen:?}"
    );
    let load = Load::start(port, "/", 4);
    for _ in 0..3 {
        supd.ok(&["reload", "plain"]);
    }
    load.finish_without_failures(51);
    // An old process may still be listed, stopping, beside its successor;
    // the serving ones carry the counts.
    let restarts: u64 = supd
        .list()
        .iter()
        .filter(|r| r["status"] == "online")
        .map(|r| r["restarts"].as_u64().unwrap())
        .sum();
    assert_eq!(
        restarts, 6,
        "three reloads of two instances are counted once each"
    );
}

#[test]
fn a_reload_counts_from_the_newest_process_while_older_ones_are_still_stopping() {
    let supd = Supd::new();
    // Each replaced process stays stopping until `release` is dropped.
    let release = supd.start_lingering("slow");
    for reloads in 1..=3 {
        supd.ok(&["reload", "slow"]);
        let rows = supd.list();
        let online: Vec<_> = rows.iter().filter(|r| r["status"] == "online").collect();
        assert_eq!(online.len(), 1, "{rows:?}");
        assert_eq!(online[0]["restarts"], reloads, "{rows:?}");
    }
    // The three replaced processes were all still stopping meanwhile.
    let stopping = supd
        .list()
        .iter()
        .filter(|r| r["status"] == "stopping")
        .count();
    assert_eq!(stopping, 3);
    drop(release);
    supd.ok(&["kill"]);
}

#[test]
fn the_preload_says_when_the_app_asked_for_another_host_than_supds_socket_listens_on() {
    let supd = Supd::new();
    let port = free_port();
    let file = supd.write(
        "asks.toml",
        &format!(
            "[[apps]]\nname = \"asks\"\nscript = \"node\"\nargs = [\"{}\"]\nport = {port}\nwait_ready = true\n[apps.env]\nAPP_HOST = \"127.0.0.1\"\n",
            fixture("unmodified.js").display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    // The app still serves, on supd's socket.
    assert_eq!(get_fresh(port, "/").unwrap().0, 200);
    let said = format!(
        "supd: the app asked to listen on 127.0.0.1:{port}; supd's socket for port {port} listens on "
    );
    let line = wait_for(
        Duration::from_secs(10),
        "the line in the app's error log",
        || {
            let err = supd.ok(&["logs", "asks", "--err", "--nostream", "--lines", "20"]);
            err.lines().find(|l| l.contains(&said)).map(str::to_string)
        },
    );
    assert!(
        line.ends_with(&format!(":{port} (set host in the ecosystem file)")),
        "{line}"
    );
}

#[test]
fn the_preloads_rule_for_the_same_host() {
    // (what the app asked for, where supd's socket listens, same place?)
    let cases = [
        ("127.0.0.1", "127.0.0.1", true),
        ("localhost", "127.0.0.1", true),
        ("LOCALHOST", "::1", true),
        ("localhost", "0.0.0.0", false),
        ("localhost", "::", false),
        ("127.0.0.1", "0.0.0.0", false),
        ("127.0.0.1", "::", false),
        ("127.0.0.1", "::ffff:127.0.0.1", true),
        ("::1", "::1", true),
        ("[::1]", "::1", true),
        ("::1", "::", false),
        ("0.0.0.0", "::", true),
        ("::", "0.0.0.0", true),
        ("10.1.2.3", "0.0.0.0", false),
        ("10.1.2.3", "10.1.2.4", false),
    ];
    let preload = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../supd/node/preload.js");
    let asked: Vec<(&str, &str)> = cases.iter().map(|&(a, b, _)| (a, b)).collect();
    let out = std::process::Command::new("node")
        .arg("-e")
        .arg(format!(
            "const {{ sameHost }} = require({:?});\n\
             const cases = JSON.parse(process.argv[1]);\n\
             console.log(JSON.stringify(cases.map(([a, b]) => sameHost(a, b))));",
            preload.display().to_string()
        ))
        .arg(serde_json::to_string(&asked).unwrap())
        .env_remove("LISTEN_FDS")
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap();
    for ((asked, actual, want), got) in cases.iter().zip(got) {
        assert_eq!(got, *want, "asked {asked}, listening on {actual}");
    }
}
