//! `supctl start NAME` of an app the daemon knows starts it with its own
//! config (as `pm2 start web` does), and `supctl env NAME [INSTANCE]` prints
//! the environment an instance was spawned with (as `pm2 env` does).

use std::collections::BTreeMap;

use crate::support::{Supd, free_port};

/// A program that exits 3 while `crash` exists, and otherwise runs.
fn flaky(supd: &Supd) -> std::path::PathBuf {
    let crash = supd.write("crash", "");
    let script = supd.script(
        "flaky.sh",
        &format!("[ -e {} ] && exit 3\nexec sleep 300", crash.display()),
    );
    supd.start_script(
        "flaky",
        &script,
        "instances = 2\nmax_restarts = 1\nmin_uptime = \"5s\"\n[apps.env]\nGREETING = \"hi\"\n",
    );
    crash
}

/// Whether every instance of `name` is online.
fn online(supd: &Supd, name: &str) -> bool {
    let rows: Vec<_> = supd
        .list()
        .into_iter()
        .filter(|p| p["name"] == name)
        .collect();
    !rows.is_empty() && rows.iter().all(|p| p["status"] == "online")
}

#[test]
fn start_name_starts_a_known_app_with_its_own_config() {
    let supd = Supd::new();
    let crash = flaky(&supd);
    for i in 0..2 {
        supd.wait_instance("flaky", i, "errored", |p| p["status"] == "errored");
    }
    let config = supd.show("flaky")["config"].clone();

    // Errored: started again with its own config, not a program "flaky".
    std::fs::remove_file(&crash).unwrap();
    let out = supd.ok(&["start", "flaky"]);
    assert!(out.contains("started flaky"), "{out}");
    assert!(online(&supd, "flaky"), "{:?}", supd.list());
    assert_eq!(supd.show("flaky")["config"], config);

    // Online: left alone, exit 0.
    let out = supd.ok(&["start", "flaky"]);
    assert!(out.contains("flaky is already online"), "{out}");

    // Stopped: the same.
    supd.ok(&["stop", "flaky"]);
    let out = supd.ok(&["start", "flaky"]);
    assert!(out.contains("started flaky"), "{out}");
    assert!(online(&supd, "flaky"), "{:?}", supd.list());
    assert_eq!(supd.show("flaky")["config"], config);

    // An option that would change its config is refused, naming the app.
    let port = free_port().to_string();
    let refused = supd.fails(&["start", "flaky", "--port", &port]);
    assert!(
        refused.contains("app \"flaky\"") && refused.contains("--port"),
        "{refused}"
    );
    assert_eq!(supd.show("flaky")["config"], config);

    // Several names, and `all`, as PM2 takes them.
    let other = supd.script("other.sh", "exec sleep 300");
    supd.start_script("other", &other, "");
    supd.ok(&["stop", "all"]);
    let out = supd.ok(&["start", "flaky", "other"]);
    assert!(
        out.contains("started flaky") && out.contains("started other"),
        "{out}"
    );
    assert!(online(&supd, "flaky") && online(&supd, "other"));
    supd.ok(&["stop", "all"]);
    let out = supd.ok(&["start", "all"]);
    assert!(
        out.contains("started flaky") && out.contains("started other"),
        "{out}"
    );
    assert!(online(&supd, "flaky") && online(&supd, "other"));
    assert_eq!(supd.show("flaky")["config"], config);

    // Among several names, an unknown one starts nothing and is named.
    supd.ok(&["stop", "other"]);
    let unknown = supd.fails(&["start", "other", "nope"]);
    assert!(unknown.contains("unknown app \"nope\""), "{unknown}");
    assert!(!online(&supd, "other"), "{:?}", supd.list());
}

/// The environment block a process was started with.
fn environ(pid: u64) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('=').unwrap_or((&entry, ""));
            (key.to_string(), value.to_string())
        })
        .collect()
}

#[test]
fn env_prints_what_an_instance_was_spawned_with() {
    let supd = Supd::new();
    let port = free_port();
    // Not a shell script: a shell sets PWD in what its child gets.
    supd.start_script(
        "web",
        std::path::Path::new("/bin/sleep"),
        &format!("args = [\"300\"]\ninstances = 2\nport = {port}\n[apps.env]\nGREETING = \"hi\"\n"),
    );
    let pid = supd.wait_instance("web", 1, "web:1 online", |p| p["status"] == "online")["pid"]
        .as_u64()
        .unwrap();

    let text = supd.ok(&["env", "web", "1"]);
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "GREETING=hi".to_string(),
        "SUPD_APP_NAME=web".to_string(),
        "INSTANCE_ID=1".to_string(),
        "NODE_APP_INSTANCE=1".to_string(),
        format!("PORT={port}"),
        "LISTEN_FDS=1".to_string(),
        format!("LISTEN_PID={pid}"),
    ] {
        assert!(lines.contains(&expected.as_str()), "{expected}: {text}");
    }
    assert!(text.contains("NOTIFY_SOCKET="), "{text}");

    // Exactly what the process got: its /proc environ, variable by variable.
    let json: BTreeMap<String, String> =
        serde_json::from_str(&supd.ok(&["env", "web", "1", "--json"])).expect("a JSON object");
    assert_eq!(json, environ(pid));

    // Instance 0 by default.
    let zero = supd.ok(&["env", "web"]);
    assert!(zero.lines().any(|l| l == "INSTANCE_ID=0"), "{zero}");

    let unknown = supd.fails(&["env", "web", "5"]);
    assert!(
        unknown.contains("app \"web\" has no instance 5"),
        "{unknown}"
    );
    let unknown = supd.fails(&["env", "nope"]);
    assert!(unknown.contains("unknown app \"nope\""), "{unknown}");
}
