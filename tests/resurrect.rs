//! Resurrect brings back the daemon settings too: `[daemon]` (metrics
//! address, sample interval, log rotation defaults) survives `save` →
//! `kill` → `resurrect`, `supd --resurrect`, and so the `supctl startup` unit.

use std::path::Path;
use std::time::Duration;

use crate::support::{Supd, free_port, wait_for};

/// A file with a `[daemon]` table (metrics on `port`, a 250 ms interval, a
/// 1M rotation default) and one app; started, saved, then the daemon killed.
/// Returns the metrics port.
fn save_daemon_settings_and_kill(supd: &Supd) -> u16 {
    let port = free_port();
    let file = supd.write(
        "eco.toml",
        &format!(
            "[daemon]\nmetrics = \"127.0.0.1:{port}\"\nsample_interval = \"250ms\"\nlog_max_size = \"1M\"\n\n[[apps]]\nname = \"nap\"\nscript = \"sleep\"\nargs = [\"300\"]\n"
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    assert_settings(supd, port);
    supd.ok(&["save"]);
    supd.ok(&["kill"]);
    assert!(
        ureq::get(&metrics_url(port)).call().is_err(),
        "metrics died with the daemon"
    );
    port
}

fn metrics_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/metrics")
}

/// `ping --json` of the daemon now running.
fn ping(supd: &Supd) -> serde_json::Value {
    serde_json::from_str(&supd.ok(&["ping", "--json"])).unwrap()
}

/// The daemon runs with the saved settings: interval, metrics address, and
/// the rotation default a new app gets.
fn assert_settings(supd: &Supd, port: u16) {
    let pong = ping(supd);
    assert_eq!(pong["sample_interval_ms"], 250, "{pong}");
    assert_eq!(pong["metrics"], format!("127.0.0.1:{port}"), "{pong}");
    let url = metrics_url(port);
    let text = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(text.contains("app=\"nap\""), "{text}");
    supd.ok(&["start", "sleep", "--name", "later", "--", "300"]);
    let config = &supd.show("later")["config"];
    assert_eq!(config["log_max_size"], 1024 * 1024, "{config}");
    supd.ok(&["delete", "later"]);
}

#[test]
fn resurrect_brings_back_the_daemon_settings() {
    let supd = Supd::new();
    let port = save_daemon_settings_and_kill(&supd);
    // The next daemon (started by the next command) runs with its defaults…
    let pong = ping(&supd);
    assert_eq!(pong["sample_interval_ms"], 1000, "{pong}");
    assert!(pong["metrics"].is_null(), "{pong}");
    assert!(ureq::get(&metrics_url(port)).call().is_err());
    // …until resurrect brings back the apps and the settings.
    let out = supd.ok(&["resurrect"]);
    assert!(out.contains("started nap"), "{out}");
    assert_settings(&supd, port);
    supd.ok(&["kill"]);
}

#[test]
fn the_startup_unit_brings_back_the_daemon_settings() {
    let supd = Supd::new();
    let port = save_daemon_settings_and_kill(&supd);
    // Run the unit's ExecStart as systemd would, with its SUPD_HOME.
    let unit = supd.ok(&["startup"]);
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart: {unit}"));
    let mut words = exec.split_whitespace();
    let program = words.next().unwrap();
    let args: Vec<&str> = words.collect();
    let _daemon = supd.spawn_daemon(Path::new(program), &args);
    wait_for(Duration::from_secs(20), "nap resurrected", || {
        supd.list()
            .iter()
            .any(|r| r["name"] == "nap" && r["status"] == "online")
            .then_some(())
    });
    assert_settings(&supd, port);
    supd.ok(&["kill"]);
}
