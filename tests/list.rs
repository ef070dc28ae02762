//! `list`: the table fits 80 columns, and an instance's memory is there from
//! its start, before the monitor's first sample.

use crate::support::Supd;

/// A platform's apps: a two-instance gateway and a service with a long name,
/// sampled once an hour so that any memory shown right after the start was
/// read at the start. They say they are ready (so `start` returns once they
/// have run: right after its exec a process has no resident page yet).
const APPS: &str = r#"[daemon]
sample_interval = "1h"

[[apps]]
name = "api-gateway"
script = "node"
args = ["-e", "process.send('ready'); setInterval(() => {}, 60000)"]
wait_ready = true
instances = 2
kill_timeout = 500

[[apps]]
name = "notification-service"
script = "node"
args = ["-e", "process.send('ready'); setInterval(() => {}, 60000)"]
wait_ready = true
kill_timeout = 500
"#;

/// The table's lines, each asserted to fit 80 columns, with the memory
/// cell of each app's rows.
fn memory_cells(table: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = table.lines().collect();
    for line in &lines {
        assert!(
            line.chars().count() <= 80,
            "{line:?} is wider than 80\n{table}"
        );
    }
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    let mem = header
        .iter()
        .position(|h| *h == "mem")
        .expect("a mem column");
    lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.len() == header.len())
        .map(|cells| (cells[0].to_string(), cells[mem].to_string()))
        .collect()
}

#[test]
fn list_right_after_start_shows_memory_and_fits_80_columns() {
    let supd = Supd::new();
    let file = supd.write("platform.toml", APPS);
    // `start` prints the table as soon as the instances are ready.
    let started = supd.ok(&["start", file.to_str().unwrap()]);
    let table = started
        .split_once("name ")
        .map(|(_, t)| format!("name {t}"));
    let table = table.unwrap_or_else(|| panic!("no table:\n{started}"));
    let list = supd.ok(&["list"]);
    for table in [&table, &list] {
        let cells = memory_cells(table);
        let names: Vec<&str> = cells.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["api-gateway", "api-gateway", "notification-service"],
            "{table}"
        );
        for (name, mem) in &cells {
            assert!(
                mem.ends_with("kb") || mem.ends_with("mb"),
                "{name} shows {mem} of memory\n{table}"
            );
        }
    }
    for row in supd.list() {
        assert!(row["pid"].as_u64().is_some(), "{row}");
        assert!(row["memory"].as_u64() > Some(0), "{row}");
    }
}
