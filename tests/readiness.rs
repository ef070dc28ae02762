//! Readiness without configuration, and the order a reload swaps processes
//! in: a Node app with a `port` is online when it listens (so `start` and
//! `reload` wait for it, instance by instance), a Node wrapper or an app
//! that never listens fails saying why, and a fork app that binds its own
//! port is stopped before its successor starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Supd, alive, free_port, get_fresh, wait_for};

/// A file of tests/fixtures.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// The pids of the online instances of `name`, by instance number.
fn online_pids(supd: &Supd, name: &str) -> Vec<u32> {
    let mut rows: Vec<Value> = supd
        .list()
        .into_iter()
        .filter(|r| r["name"] == name && r["status"] == "online")
        .collect();
    rows.sort_by_key(|r| r["instance"].as_u64());
    rows.iter()
        .map(|r| r["pid"].as_u64().expect("a pid") as u32)
        .collect()
}

/// The time (ms since the epoch) a `slow_listen.js` process wrote as its
/// `what` mark (`started`, `listening`), if it did.
fn mark(marks: &Path, what: &str, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(marks.join(format!("{what}-{pid}"))).ok()?;
    Some(text.trim().parse().expect("a time"))
}

/// The pid that answered a GET on `port` (its body names it).
fn answering_pid(port: u16) -> Option<u32> {
    let (status, body) = get_fresh(port, "/").ok()?;
    assert_eq!(status, 200, "{body}");
    // own_port.py answers its bare pid, slow_listen.js JSON with a pid.
    let body = body.trim();
    body.parse().ok().or_else(|| {
        let json: Value = serde_json::from_str(body).ok()?;
        json["pid"].as_u64().map(|p| p as u32)
    })
}

/// Runs a supctl command with `MARKS_DIR` in its environment (which an
/// ad-hoc app's instances inherit); asserts success, returns stdout.
fn ok_with_marks(supd: &Supd, marks: &Path, args: &[&str]) -> String {
    let mut cmd = supd.cmd(args);
    cmd.env("MARKS_DIR", marks);
    let out = supd.output(cmd, args);
    assert!(
        out.status.success(),
        "supctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_adhoc_node_app_with_a_port_is_online_when_it_listens_and_reloads_instance_by_instance() {
    let supd = Supd::new();
    let port = free_port();
    let marks = supd.work().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let script = fixture("slow_listen.js");
    let port_arg = port.to_string();
    // The form docs/coming-from-pm2.md gives, no readiness key anywhere;
    // each instance listens a second after it starts.
    let args = [
        "start",
        "node",
        "--name",
        "web",
        "-i",
        "2",
        "--port",
        &port_arg,
        "--",
        script.to_str().unwrap(),
    ];
    let started = Instant::now();
    ok_with_marks(&supd, &marks, &args);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "start waited for the instances to listen: {:?}",
        started.elapsed()
    );
    let first = online_pids(&supd, "web");
    assert_eq!(first.len(), 2, "{:?}", supd.list());
    for &pid in &first {
        assert!(
            mark(&marks, "listening", pid).is_some(),
            "pid {pid} listens once start has returned"
        );
    }
    assert!(first.contains(&answering_pid(port).expect("served after start")));

    let out = ok_with_marks(&supd, &marks, &["reload", "web"]);
    let new = online_pids(&supd, "web");
    assert_eq!(new.len(), 2, "{:?}", supd.list());
    for slot in 0..2 {
        assert!(
            out.contains(&format!(
                "web[{slot}]: pid {} -> {}, online",
                first[slot], new[slot]
            )),
            "{out}"
        );
        assert!(
            mark(&marks, "listening", new[slot]).is_some(),
            "new pid {} listens once reload has returned",
            new[slot]
        );
    }
    // Instance by instance: the second new process was started only once
    // the first one listened.
    let listened = mark(&marks, "listening", new[0]).unwrap();
    let next_started = mark(&marks, "started", new[1]).expect("started mark");
    assert!(
        next_started >= listened,
        "instance 1 started at {next_started}, before instance 0 listened at {listened}"
    );
    wait_for(Duration::from_secs(10), "the old pids to be gone", || {
        first.iter().all(|&p| !alive(p)).then_some(())
    });
    let pid = answering_pid(port).expect("served after reload");
    assert!(new.contains(&pid), "{pid} is not one of {new:?}");
    let show = supd.ok(&["show", "web"]);
    assert!(
        show.contains("when it listens on port") && show.contains("(Node), within 3s"),
        "{show}"
    );
}

/// An ecosystem file with one app `name` running `script` with `args` on
/// `port`, plus `keys` (TOML lines).
fn node_app(supd: &Supd, name: &str, script: &str, args: &[&str], port: u16, keys: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let file = supd.write(
        &format!("{name}.toml"),
        &format!(
            "[[apps]]\nname = \"{name}\"\nscript = \"{script}\"\nargs = [{}]\nport = {port}\n{keys}",
            args.join(", ")
        ),
    );
    file.to_str().unwrap().to_owned()
}

/// A Node server that has not listened by `listen_timeout` is late, not
/// failed (a slow start on a busy machine must not kill it): it is counted
/// online at the timeout, as PM2 does, with the reason as its status.
#[test]
fn a_node_app_that_never_listens_on_its_port_is_counted_online_at_the_timeout_saying_so() {
    let supd = Supd::new();
    let port = free_port();
    let idle = ["-e", "setInterval(() => {}, 1000)"];
    let file = node_app(
        &supd,
        "idle",
        "node",
        &idle,
        port,
        "listen_timeout = \"1s\"\n",
    );
    let started = Instant::now();
    supd.ok(&["start", &file]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "start waited for the listen: {:?}",
        started.elapsed()
    );
    let reason =
        format!("did not listen on port {port} within 1s (listen_timeout); counted online");
    let show = supd.show("idle");
    let instance = &show["instances"][0];
    assert_eq!(instance["status"], "online", "{show}");
    assert!(
        instance["status_text"].as_str().unwrap().contains(&reason),
        "{show}"
    );
    assert!(
        supd.ok(&["show", "idle"]).contains("wait_ready = false"),
        "names the way out"
    );
    let log = std::fs::read_to_string(supd.home().join("supd.log")).unwrap();
    assert!(log.contains(&reason), "the daemon log says it: {log}");

    // `wait_ready = false`, written, turns the wait off.
    supd.ok(&["delete", "idle"]);
    let file = node_app(&supd, "idle", "node", &idle, port, "wait_ready = false\n");
    supd.ok(&["start", &file]);
    assert_eq!(supd.instance("idle", 0)["status"], "online");
    assert!(supd.ok(&["show", "idle"]).contains("at spawn"));
}

#[test]
fn a_cluster_app_run_through_npm_fails_to_start_naming_the_program_to_run() {
    let supd = Supd::new();
    let port = free_port();
    supd.npm_project();
    let file = node_app(
        &supd,
        "web",
        "npm",
        &["start"],
        port,
        "exec_mode = \"cluster\"\ninstances = 2\nlisten_timeout = \"3s\"\n\
         [apps.env]\nNPM_CONFIG_UPDATE_NOTIFIER = \"false\"\n",
    );
    let err = supd.fails(&["start", &file]);
    assert!(
        err.contains("npm starts the server as a grandchild")
            && err.contains("(script = \"node\", args = [\"server.js\"]), not npm")
            && err.contains("\"web\""),
        "{err}"
    );
    assert!(
        supd.ok(&["show", "web"]).contains("through npm: it cannot"),
        "show says why"
    );
}

#[test]
fn a_fork_app_that_binds_its_own_port_is_reloaded_stop_then_start() {
    let supd = Supd::new();
    let port = free_port();
    let file = supd.write(
        "own.toml",
        &format!(
            "[[apps]]\nname = \"own\"\nscript = \"{}\"\n[apps.env]\nAPP_PORT = \"{port}\"\n",
            fixture("own_port.py").display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let old = wait_for(Duration::from_secs(20), "the app to serve", || {
        answering_pid(port)
    });
    assert_eq!(online_pids(&supd, "own"), [old]);

    // The old process keeps its port for a second after the stop signal:
    // a successor started beside it could not bind.
    supd.ok(&["reload", "own"]);
    let new = wait_for(Duration::from_secs(20), "the app to serve again", || {
        answering_pid(port).filter(|&pid| pid != old)
    });
    let row = supd.instance("own", 0);
    assert_eq!(row["pid"], new, "{row}");
    assert_eq!(row["status"], "online", "{row}");
    assert_eq!(
        row["restarts"], 1,
        "the reload only, no crash restart: {row}"
    );
    assert!(!alive(old));
}
