//! The command names PM2 users type: `describe`/`desc`/`info`, `sendSignal`,
//! `jlist`, `prettylist`, `pid`, `reset` and `completions`.

use std::time::Duration;

use crate::support::{Supd, wait_for};

/// Starts `web`: two instances that each write a file named after their pid
/// when they get SIGUSR1, and otherwise run until stopped.
fn start_web(supd: &Supd) {
    let marks = supd.work();
    let script = supd.script(
        "web.sh",
        &format!(
            "trap 'touch {}/usr1.$$' USR1\nwhile :; do sleep 0.1; done",
            marks.display()
        ),
    );
    supd.start_script("web", &script, "instances = 2\n");
    for i in 0..2 {
        supd.wait_instance("web", i, "web online", |p| p["status"] == "online");
    }
}

/// The pids of `web`'s instances, in instance order, from `list --json`.
fn web_pids(supd: &Supd) -> Vec<u64> {
    supd.list()
        .iter()
        .filter(|p| p["name"] == "web")
        .map(|p| p["pid"].as_u64().expect("a running instance has a pid"))
        .collect()
}

/// The pids in a JSON process table, in order.
fn pids_in(table: &str) -> Vec<u64> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(table).expect("a JSON table");
    rows.iter().filter_map(|p| p["pid"].as_u64()).collect()
}

#[test]
fn pm2_names_answer_as_supd_commands() {
    let supd = Supd::new();
    start_web(&supd);
    let pids = web_pids(&supd);

    // describe, desc and info are show.
    let shown = supd.show("web");
    for alias in ["describe", "desc", "info"] {
        let described: serde_json::Value =
            serde_json::from_str(&supd.ok(&[alias, "web", "--json"])).expect("JSON");
        assert_eq!(described["config"], shown["config"], "{alias}");
        let text = supd.ok(&[alias, "web"]);
        assert!(text.contains("web"), "{alias}: {text}");
    }
    let unknown = supd.fails(&["describe", "nope"]);
    assert!(unknown.contains("unknown app \"nope\""), "{unknown}");

    // jlist: the table as JSON on one line; prettylist: the same, indented.
    let jlist = supd.ok(&["jlist"]);
    assert_eq!(jlist.trim_end().lines().count(), 1, "{jlist}");
    assert_eq!(pids_in(&jlist), pids);
    let pretty = supd.ok(&["prettylist"]);
    assert!(pretty.lines().count() > 2, "{pretty}");
    assert_eq!(pids_in(&pretty), pids);

    // pid NAME: one pid per line; pid: every app's; an unknown app is an error.
    let listed = |out: String| -> Vec<u64> { out.lines().map(|l| l.parse().unwrap()).collect() };
    assert_eq!(listed(supd.ok(&["pid", "web"])), pids);
    assert_eq!(listed(supd.ok(&["pid"])), pids);
    let unknown = supd.fails(&["pid", "nope"]);
    assert!(unknown.contains("unknown app \"nope\""), "{unknown}");

    // sendSignal SIG NAME is signal: every instance gets it.
    let out = supd.ok(&["sendSignal", "SIGUSR1", "web"]);
    assert_eq!(out.trim(), "sent SIGUSR1 to web");
    for pid in pids {
        let mark = supd.work().join(format!("usr1.{pid}"));
        wait_for(Duration::from_secs(10), "instance got SIGUSR1", || {
            mark.exists().then_some(())
        });
    }

    supd.ok(&["stop", "web"]);
    assert_eq!(supd.ok(&["pid", "web"]), "", "a stopped app has no pid");
}

#[test]
fn reset_zeroes_restart_counters_and_restarts_nothing() {
    let supd = Supd::new();
    start_web(&supd);
    supd.ok(&["restart", "web"]);
    supd.ok(&["restart", "web"]);
    for i in 0..2 {
        supd.wait_instance("web", i, "two restarts", |p| {
            p["status"] == "online" && p["restarts"] == 2
        });
    }
    let pids = web_pids(&supd);

    assert_eq!(supd.ok(&["reset", "web"]).trim(), "reset web");
    for row in supd.list() {
        assert_eq!(row["restarts"], 0, "{row}");
        assert_eq!(row["status"], "online", "{row}");
    }
    for inst in supd.show("web")["instances"].as_array().unwrap() {
        assert_eq!(inst["unstable_restarts"], 0, "{inst}");
    }
    assert_eq!(web_pids(&supd), pids, "reset restarts nothing");

    // Counting goes on from zero; `reset all` covers every app.
    supd.ok(&["restart", "web"]);
    supd.wait_instance("web", 1, "one restart", |p| {
        p["status"] == "online" && p["restarts"] == 1
    });
    assert_eq!(supd.ok(&["reset", "all"]).trim(), "reset web");
    assert!(supd.list().iter().all(|p| p["restarts"] == 0));

    let unknown = supd.fails(&["reset", "nope"]);
    assert!(unknown.contains("unknown app \"nope\""), "{unknown}");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let supd = Supd::new();
    // bash: the script loads and registers a completion for supctl.
    let bash = supd.ok(&["completions", "bash"]);
    let script = supd.write("supctl.bash", &bash);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p supctl", script.display()))
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("supctl"));
    for command in ["describe", "sendSignal", "jlist", "reset", "completions"] {
        assert!(bash.contains(command), "bash completes {command}");
    }

    let zsh = supd.ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef supctl"), "{zsh}");
    let fish = supd.ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c supctl"), "{fish}");
    assert!(fish.contains("sendSignal"), "{fish}");

    let err = supd.fails(&["completions", "tcsh"]);
    assert!(err.contains("tcsh"), "{err}");
    assert!(
        !supd.home().join("supd.sock").exists(),
        "completions never start the daemon"
    );
}
