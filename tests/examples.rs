//! The getting-started examples run as written: the `sh` block of
//! docs/getting-started.md's "Start a single program" section is run line by
//! line through the real binaries, from a copy of docs/examples in which the
//! example port 3000 is replaced by a free port (so parallel tests and other
//! daemons on this machine do not collide).

use std::path::Path;
use std::time::Duration;

use crate::support::{Supd, get_fresh, wait_for};

/// The section of docs/getting-started.md whose first `sh` block is run.
const SECTION: &str = "## Start a single program";

/// The port the examples use; replaced in the copy.
const EXAMPLE_PORT: &str = "3000";

/// The repository's root.
fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The command lines of the first `sh` block after `SECTION`, each cut at
/// its comment.
fn documented_block() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("docs/getting-started.md")).unwrap();
    let section = &text[text.find(SECTION).expect("the section is in the guide")..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has an sh block");
    block
        .lines()
        .map(|line| line.split(" #").next().unwrap().trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}

/// Copies docs/examples into `to/docs/examples` with the example port
/// replaced by `port`, so the documented paths work from `to`.
fn copy_examples(to: &Path, port: u16) {
    let dest = to.join("docs/examples");
    std::fs::create_dir_all(&dest).unwrap();
    let mut replaced = 0;
    for entry in std::fs::read_dir(root().join("docs/examples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        replaced += text.matches(EXAMPLE_PORT).count();
        let text = text.replace(EXAMPLE_PORT, &port.to_string());
        std::fs::write(dest.join(path.file_name().unwrap()), text).unwrap();
    }
    assert!(
        replaced > 0,
        "the examples no longer use port {EXAMPLE_PORT}"
    );
}

/// The pids of `web`'s online instances.
fn web_pids(sd: &Supd) -> Vec<u64> {
    sd.list()
        .into_iter()
        .filter(|p| p["name"] == "web" && p["status"] == "online")
        .filter_map(|p| p["pid"].as_u64())
        .collect()
}

/// What `curl -s 127.0.0.1:3000/` shows: an answer from one of web's instances.
fn web_answers(sd: &Supd, port: u16) {
    wait_for(
        Duration::from_secs(20),
        "web to answer from one of its instances",
        || {
            let (status, body) = get_fresh(port, "/").ok()?;
            let pid: u64 = body.trim().strip_prefix("hello from pid ")?.parse().ok()?;
            (status == 200 && web_pids(sd).contains(&pid)).then_some(())
        },
    );
}

#[test]
fn the_getting_started_examples_run_as_written() {
    let sd = Supd::new();
    let port = crate::support::free_port();
    copy_examples(&sd.work(), port);
    let lines = documented_block();
    assert!(lines.len() >= 4, "the block is too short: {lines:?}");
    for line in &lines {
        let words = shlex::split(line).unwrap();
        let args: Vec<&str> = words.iter().skip(1).map(String::as_str).collect();
        match words[0].as_str() {
            "curl" => {
                assert_eq!(args, ["-s", "127.0.0.1:3000/"], "{line}");
                web_answers(&sd, port);
            }
            "supctl" if args[0] == "logs" => {
                // The worker prints its first line just after its start.
                wait_for(Duration::from_secs(20), "the worker's first tick", || {
                    let out = sd.output(sd.cmd(&args), &args);
                    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                    (out.status.success() && stdout.contains("worker:0 | worker ")).then_some(())
                });
            }
            "supctl" => {
                let mut cmd = sd.cmd(&args);
                cmd.env_remove("PORT");
                let out = sd.output(cmd, &args);
                assert!(
                    out.status.success(),
                    "`{line}` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            other => panic!("the test does not run `{other}`: {line}"),
        }
    }
    // The block ends with the ecosystem file's apps: web twice in cluster
    // mode on the (replaced) port, and the worker. `reload` returns once the
    // new instances are online; the old ones may still be draining.
    wait_for(
        Duration::from_secs(20),
        "web: two cluster instances",
        || {
            let web: Vec<_> = sd
                .list()
                .into_iter()
                .filter(|p| p["name"] == "web")
                .collect();
            let settled = web.len() == 2
                && web.iter().all(|p| {
                    p["status"] == "online" && p["mode"] == "cluster" && p["port"] == port
                });
            settled.then_some(())
        },
    );
    let worker = sd.instance("worker", 0);
    assert_eq!(worker["status"], "online", "{worker}");
    web_answers(&sd, port);
}
