//! Zero-config Node clusters (docs/cluster.md, "Zero-config Node
//! clusters"): a Node app in cluster mode without a `port`, which calls
//! `listen(<its own port>)`, has that port learned at its first listen and
//! held by the daemon like a configured one: every instance serves, a
//! reload under a keep-alive load fails no request, the learned port stays
//! across a stop, a start and save → kill → resurrect. An instance asking for
//! another port is refused on its stderr; a cluster of a program that is not
//! Node, without a port, is refused at start and at check.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::wait_online;
use crate::drain::reloads_fail_nothing;
use crate::support::{Supd, free_port, get_fresh, wait_for};

/// An unmodified plain-`http` app (as an Express app would be) that
/// listens on `PORT` or, without it, on the port written in its code.
fn plain_app(supd: &Supd, port: u16) -> PathBuf {
    supd.write(
        "app.js",
        &format!(
            "const http = require('http');\n\
             const server = http.createServer((req, res) => {{\n\
             \x20 res.setHeader('Content-Type', 'application/json');\n\
             \x20 res.end(JSON.stringify({{ instance: `instance-${{process.env.NODE_APP_INSTANCE}}`, pid: process.pid }}));\n\
             }});\n\
             server.listen(process.env.PORT || {port}, () => console.log('listening'));\n"
        ),
    )
}

/// The pids that answer `count` fresh connections to `port`.
fn answering(port: u16, count: usize) -> HashSet<u64> {
    (0..count)
        .map(|_| {
            let (status, body) = get_fresh(port, "/").expect("an answer");
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["pid"].as_u64().unwrap()
        })
        .collect()
}

/// Both instances of `name` online and answering on `port`; their pids.
fn both_serve(supd: &Supd, name: &str, port: u16) -> Vec<u64> {
    let pids = wait_online(supd, name, 2);
    wait_for(Duration::from_secs(20), "both instances to answer", || {
        let seen = answering(port, 40);
        pids.iter().all(|p| seen.contains(p)).then_some(())
    });
    pids
}

/// `show` says the port was learned, and `list` gives it.
fn shows_learned(supd: &Supd, name: &str, port: u16) {
    let page = supd.ok(&["show", name]);
    assert!(
        page.contains(&format!("{port} (learned from the app's listen())")),
        "{page}"
    );
    assert_eq!(supd.instance(name, 0)["port"], port, "list gives the port");
}

#[test]
fn node_with_instances_and_no_port_serves_from_both_and_reloads_without_a_failure() {
    let supd = Supd::new();
    let port = free_port();
    let app = plain_app(&supd, port);
    supd.ok(&[
        "start",
        "node",
        "--name",
        "web",
        "-i",
        "2",
        "--",
        app.to_str().unwrap(),
    ]);
    both_serve(&supd, "web", port);
    shows_learned(&supd, "web", port);
    reloads_fail_nothing(&supd, "web", port, "/", 2);
}

#[test]
fn an_ecosystem_cluster_without_a_port_learns_it_and_keeps_it() {
    let supd = Supd::new();
    let port = free_port();
    let app = plain_app(&supd, port);
    let file = supd.write(
        "eco.toml",
        &format!(
            "[[apps]]\nname = \"api\"\nscript = \"{}\"\nexec_mode = \"cluster\"\ninstances = 2\n",
            app.display()
        ),
    );
    let file = file.to_str().unwrap();
    supd.ok(&["start", file]);
    both_serve(&supd, "api", port);
    shows_learned(&supd, "api", port);

    // Kept: stopped and started again from the same file (without a port).
    supd.ok(&["stop", "api"]);
    supd.ok(&["start", file]);
    both_serve(&supd, "api", port);
    shows_learned(&supd, "api", port);

    // Kept across save, kill and resurrect.
    supd.ok(&["save"]);
    supd.ok(&["kill"]);
    supd.ok(&["resurrect"]);
    both_serve(&supd, "api", port);
    shows_learned(&supd, "api", port);
}

#[test]
fn an_instance_asking_for_another_port_is_refused_on_its_stderr() {
    let supd = Supd::new();
    let (first, second) = (free_port(), free_port());
    let app = supd.write(
        "two.js",
        &format!(
            "const http = require('http');\n\
             const port = process.env.NODE_APP_INSTANCE === '0' ? {first} : {second};\n\
             http.createServer((req, res) => res.end('hi')).listen(port);\n"
        ),
    );
    // Whichever asks first sets the port; the other is refused.
    let _ = supd.run(&[
        "start",
        "node",
        "--name",
        "two",
        "-i",
        "2",
        "--",
        app.to_str().unwrap(),
    ]);
    let log = supd.home().join("logs/two-err.log");
    let refused = wait_for(
        Duration::from_secs(20),
        "the refusal in the err log",
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .find(|l| {
                    l.starts_with("supd: ")
                        && l.contains("every instance of a cluster app serves the same port")
                })
                .map(String::from)
        },
    );
    let learned = supd.instance("two", 0)["port"].as_u64().unwrap() as u16;
    let other = if learned == first { second } else { first };
    assert!(
        refused.contains(&format!("listen() asked for port {other}, but the app's port is {learned} (learned from the first listen())")),
        "{refused}"
    );
}

#[test]
fn a_cluster_of_a_program_that_is_not_node_needs_a_port() {
    let supd = Supd::new();
    let want = "cluster mode with 2 instances and no port: supd learns the port only of a Node app";
    let err = supd.fails(&["start", "sleep", "-i", "2", "--", "300"]);
    assert!(
        err.contains("app \"sleep\"") && err.contains(want) && err.contains("set port (--port)"),
        "{err}"
    );
    let file = supd.write(
        "eco.toml",
        "[[apps]]\nname = \"py\"\nscript = \"app.py\"\nexec_mode = \"cluster\"\ninstances = 2\n",
    );
    for command in ["check", "start"] {
        let err = supd.fails(&[command, file.to_str().unwrap()]);
        assert!(
            err.contains("eco.toml:4:13: apps[0].exec_mode: ") && err.contains(want),
            "{command}: {err}"
        );
    }
    assert!(supd.list().is_empty(), "nothing registered");
    // With a port it starts.
    let port = free_port().to_string();
    supd.ok(&["start", "sleep", "-i", "2", "--port", &port, "--", "300"]);
}
