//! PM2's other names for commands supctl has: `del`, `l`, `ps`, `log`,
//! `dump`, `updatePM2`, and `dashboard`, `dash`, `imonit` for `monit`
//! (docs/coming-from-pm2.md, "Commands").

use std::time::Duration;

use crate::support::{Supd, wait_for};

/// The pids of a JSON process table, in order.
fn pids(table: &str) -> Vec<u64> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(table).expect("a JSON table");
    rows.iter().filter_map(|p| p["pid"].as_u64()).collect()
}

#[test]
fn pm2_aliases_do_what_their_supctl_commands_do() {
    let supd = Supd::new();
    let script = supd.script("web.sh", "echo hello-from-web\nwhile :; do sleep 0.1; done");
    supd.start_script("web", &script, "");
    let pid = supd.wait_instance("web", 0, "web online", |p| p["status"] == "online")["pid"]
        .as_u64()
        .unwrap();

    // l and ps are list.
    for alias in ["l", "ps"] {
        assert_eq!(pids(&supd.ok(&[alias, "--json"])), [pid], "{alias}");
        let table = supd.ok(&[alias]);
        assert!(
            table.lines().any(|l| l.starts_with("web ")),
            "{alias}: {table}"
        );
    }

    // log is logs.
    wait_for(Duration::from_secs(10), "web's line through `log`", || {
        supd.ok(&["log", "web", "--nostream"])
            .contains("hello-from-web")
            .then_some(())
    });

    // dump is save.
    let dump = supd.home().join("dump.json");
    assert!(!dump.exists());
    supd.ok(&["dump"]);
    let saved = std::fs::read_to_string(&dump).expect("dump wrote dump.json");
    assert!(saved.contains("\"web\""), "{saved}");

    // updatePM2 is update: the daemon re-executes itself, web keeps running.
    let daemon = supd.daemon_pid();
    supd.ok(&["updatePM2"]);
    assert_eq!(supd.daemon_pid(), daemon);
    assert_eq!(pids(&supd.ok(&["list", "--json"])), [pid]);

    // dashboard, dash and imonit are monit (which needs a terminal).
    for alias in ["dashboard", "dash", "imonit"] {
        let help = supd.ok(&[alias, "--help"]);
        assert!(help.starts_with("Live dashboard"), "{alias}: {help}");
    }

    // del is delete.
    supd.ok(&["del", "web"]);
    assert_eq!(supd.ok(&["list", "--json"]).trim(), "[]");
}
