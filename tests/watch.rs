//! Watch mode (`watch`, `ignore_watch`, `watch_delay`): a change under a
//! watched path restarts the app once, debounced; ignored paths, SUPD_HOME
//! and stopped apps never restart; a cluster app is reloaded without a
//! failed request.
//!
//! A restart that must not happen is shown not to have happened by order,
//! not by waiting: a later change that must restart the app does, and the
//! restart count and reason show nothing came before it.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::cluster_file;
use crate::support::{Load, Supd, free_port, wait_for};

/// Writes `path` (under the work folder), making its folders.
fn touch(supd: &Supd, path: &str) {
    let path = supd.work().join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("{:?}\n", std::time::SystemTime::now())).unwrap();
}

/// An ecosystem file for a fork app `w` that prints a line and sleeps,
/// watching with a 200 ms delay; `extra` adds keys.
fn sleeper(supd: &Supd, extra: &str) -> String {
    touch(supd, "src/a.js");
    touch(supd, "src/b.js");
    let file = supd.write(
        "watch.toml",
        &format!(
            "[[apps]]\nname = \"w\"\nscript = \"sh\"\nargs = [\"-c\", \"echo started; exec sleep 300\"]\nwatch_delay = \"200ms\"\nkill_timeout = 500\n{extra}\n"
        ),
    );
    file.display().to_string()
}

/// `show`'s instances of `name` once their restarts add up to `n`.
fn after_restarts(supd: &Supd, name: &str, n: u64) -> Vec<Value> {
    wait_for(
        Duration::from_secs(20),
        &format!("{n} restarts of {name}"),
        || {
            let show = supd.show(name);
            let instances = show["instances"].as_array()?.clone();
            let total: u64 = instances
                .iter()
                .filter_map(|i| i["restarts"].as_u64())
                .sum();
            let online = instances.iter().all(|i| i["status"] == "online");
            // Mid-reload a slot lists its old process beside the new one,
            // both online, until the old one is retired.
            let mut slots: Vec<u64> = instances
                .iter()
                .filter_map(|i| i["instance"].as_u64())
                .collect();
            slots.sort_unstable();
            slots.dedup();
            let one_per_slot = slots.len() == instances.len();
            (total >= n && online && one_per_slot).then_some(instances)
        },
    )
}

/// The one instance of `name` after its `n`th restart: its pid, asserting
/// that it restarted exactly `n` times, last because `reason`.
fn restarted(supd: &Supd, name: &str, n: u64, reason: &str) -> u64 {
    let instances = after_restarts(supd, name, n);
    let [instance] = instances.as_slice() else {
        panic!("one instance: {instances:?}")
    };
    assert_eq!(instance["restarts"], n, "{instance}");
    assert_eq!(instance["restart_reason"], reason, "{instance}");
    instance["pid"].as_u64().unwrap()
}

#[test]
fn several_changes_within_the_delay_restart_the_app_once() {
    let supd = Supd::new();
    let file = sleeper(&supd, "watch = true");
    supd.ok(&["start", &file]);
    let first = supd.instance("w", 0)["pid"].as_u64().unwrap();
    for _ in 0..3 {
        touch(&supd, "src/a.js");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = restarted(&supd, "w", 1, "watch: src/a.js changed");
    assert_ne!(second, first);
    // A later change restarts it again: had the burst restarted it twice,
    // this would be the third restart, or name a.js.
    touch(&supd, "src/b.js");
    let third = restarted(&supd, "w", 2, "watch: src/b.js changed");
    assert_ne!(third, second);
    let log = std::fs::read_to_string(supd.home().join("supd.log")).unwrap();
    assert!(
        log.contains("watch: src/a.js changed: restarting"),
        "the daemon log says why"
    );
    let text = supd.ok(&["show", "w"]);
    assert!(
        text.contains("last restarted by supd: watch: src/b.js changed"),
        "{text}"
    );
}

#[test]
fn ignored_paths_and_supd_home_do_not_restart_the_app() {
    let supd = Supd::new();
    // The parent of the work folder holds SUPD_HOME: the app's log line
    // at every start must not restart it again.
    let file = sleeper(
        &supd,
        "watch = [\"..\"]\nignore_watch = [\"*.log\", \"tmp/**\"]",
    );
    let ignored = [
        "debug.log",
        "src/deep/trace.log",
        "tmp/cache/x",
        "node_modules/m/index.js",
        "src/node_modules/n/index.js",
        ".git/HEAD",
    ];
    // Their folders exist before: a new folder is a change.
    for path in ignored {
        touch(&supd, path);
    }
    supd.ok(&["start", &file]);
    for path in ignored {
        touch(&supd, path);
    }
    touch(&supd, "src/a.js");
    // Had any ignored path counted, it would be named, or restart the app
    // once more.
    restarted(&supd, "w", 1, "watch: src/a.js changed");
    touch(&supd, "src/b.js");
    restarted(&supd, "w", 2, "watch: src/b.js changed");
}

#[test]
fn a_stopped_app_is_not_watched_until_it_starts_again() {
    let supd = Supd::new();
    let file = sleeper(&supd, "watch = [\"src\"]");
    supd.ok(&["start", &file]);
    supd.ok(&["stop", "w"]);
    touch(&supd, "src/a.js");
    supd.ok(&["start", &file]);
    // Starting is not a restart; a change acted on while stopped would
    // have been one (and been named).
    assert_eq!(supd.instance("w", 0)["restarts"], 0);
    touch(&supd, "src/b.js");
    restarted(&supd, "w", 1, "watch: src/b.js changed");
}

#[test]
fn a_program_started_with_watch_restarts_on_a_change() {
    let supd = Supd::new();
    touch(&supd, "src/a.js");
    supd.ok(&[
        "start",
        "sh",
        "--name",
        "w",
        "--watch",
        "--",
        "-c",
        "exec sleep 300",
    ]);
    assert_eq!(
        supd.show("w")["config"]["watch"][0],
        supd.work().canonicalize().unwrap().display().to_string()
    );
    touch(&supd, "src/a.js");
    // The default watch_delay, 1 s, as in PM2.
    restarted(&supd, "w", 1, "watch: src/a.js changed");
}

#[test]
fn a_cluster_app_is_reloaded_without_a_failed_request() {
    let supd = Supd::new();
    let port = free_port();
    touch(&supd, "src/routes.js");
    let extra = "watch = [\"src\"]\nwatch_delay = \"200ms\"";
    supd.ok(&["start", &cluster_file(&supd, "users", port, 2, extra)]);
    let before: Vec<u64> = supd
        .list()
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    let load = Load::start(port, "/health", 4);
    touch(&supd, "src/routes.js");
    let instances = after_restarts(&supd, "users", 2);
    load.finish_without_failures(10);
    for instance in &instances {
        assert_eq!(instance["restarts"], 1, "{instance}");
        assert_eq!(instance["restart_reason"], "watch: src/routes.js changed");
        assert!(!before.contains(&instance["pid"].as_u64().unwrap()));
    }
}

#[test]
fn a_watched_folder_that_goes_away_is_shown_and_watched_again_after_a_restart() {
    let supd = Supd::new();
    let file = sleeper(&supd, "watch = [\"src\"]");
    supd.ok(&["start", &file]);
    std::fs::remove_dir_all(supd.work().join("src")).unwrap();
    // Its removal (with a.js and b.js in it) is a change; watching it
    // again afterwards is the problem.
    restarted(&supd, "w", 1, "watch: src and 2 other paths changed");
    let problem = wait_for(Duration::from_secs(10), "the watch problem", || {
        supd.show("w")["watch_problem"].as_str().map(str::to_owned)
    });
    let src = supd.work().canonicalize().unwrap().join("src");
    assert!(
        problem.contains(&format!("cannot watch {}", src.display())),
        "{problem}"
    );
    assert!(supd.ok(&["show", "w"]).contains("watch problem"));
    // Back, and a restart watches it again.
    touch(&supd, "src/a.js");
    supd.ok(&["restart", "w"]);
    assert!(supd.show("w")["watch_problem"].is_null());
    touch(&supd, "src/a.js");
    restarted(&supd, "w", 3, "watch: src/a.js changed");
}

#[test]
fn watch_keys_are_checked_before_anything_starts() {
    let supd = Supd::new();
    let file = supd.write(
        "bad.toml",
        "[[apps]]\nname = \"w\"\nscript = \"sleep\"\nwatch = [\"missing\"]\nignore_watch = [\"[a\"]\n",
    );
    let err = supd.fails(&["check", file.to_str().unwrap()]);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("bad.toml:4:10: apps[0].watch[0]: \"missing\" does not exist"),
        "{err}"
    );
    assert!(
        lines[1].contains("bad.toml:5:17: apps[0].ignore_watch[0]: \"[a\" is not a valid glob"),
        "{err}"
    );
    let err = supd.fails(&["start", file.to_str().unwrap()]);
    assert!(err.contains("bad.toml:4:10"), "{err}");
}

#[test]
fn watch_settings_a_reload_brings_are_followed_when_it_returns() {
    let supd = Supd::new();
    let file = sleeper(&supd, "watch = false");
    supd.ok(&["start", &file]);
    let restarts = || supd.instance("w", 0)["restarts"].as_u64().unwrap();
    // Watched once the reload that adds `watch` returns.
    sleeper(&supd, "watch = [\"src\"]");
    supd.ok(&["reload", &file]);
    let reloaded = restarts();
    touch(&supd, "src/a.js");
    restarted(&supd, "w", reloaded + 1, "watch: src/a.js changed");
    // Not watched once the reload that drops it returns: had the change
    // to a.js counted, it would be named below, or be one restart more.
    sleeper(&supd, "watch = false");
    supd.ok(&["reload", &file]);
    touch(&supd, "src/a.js");
    sleeper(&supd, "watch = [\"src\"]");
    supd.ok(&["reload", &file]);
    let reloaded = restarts();
    touch(&supd, "src/b.js");
    restarted(&supd, "w", reloaded + 1, "watch: src/b.js changed");
}
