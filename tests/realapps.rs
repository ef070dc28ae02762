//! Software we did not write, under supd: Express and Fastify (npm), gunicorn
//! with a Flask app and uvicorn with a Starlette app (pip). Each runs in
//! cluster mode with two instances on a daemon-held port, serves from both,
//! and is reloaded three times under keep-alive load: a client on persistent
//! connections that never retries, as wrk and load balancers are.
//!
//! The apps are the fixtures of `tests/fixtures/realapps/`, written the way
//! their frameworks' documentation writes them; the answer names the
//! instance and the process that served it. The frameworks are installed by
//! the tests themselves, once (see [`install`]).

mod install;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::{KeepAliveLoad, Outcome, Supd, free_port, get_fresh, wait_for};

/// Persistent connections of the load (wrk runs 32; this is the debug
/// daemon's share of a 2-core machine that runs other tests too).
const CONNECTIONS: usize = 8;

/// Reloads under load per app.
const RELOADS: usize = 3;

/// Starts `name` in cluster mode with two instances on a daemon-held port,
/// with `keys` (TOML lines of the app; a table such as `[apps.env]` last).
/// Its port.
fn start_cluster(supd: &Supd, name: &str, keys: &str) -> u16 {
    let port = free_port();
    let file = supd.write(
        &format!("{name}.toml"),
        &format!(
            "[[apps]]\nname = \"{name}\"\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\n{keys}"
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    port
}

/// A Node app of the fixtures, unmodified and with no readiness key: the
/// frameworks come from `NODE_PATH`.
fn start_node(supd: &Supd, name: &str, script: &str) -> u16 {
    let node_modules = install::node();
    start_cluster(
        supd,
        name,
        &format!(
            "script = \"node\"\nargs = [\"{}\"]\n[apps.env]\nNODE_PATH = \"{}\"\n",
            install::fixtures().join(script).display(),
            node_modules.display()
        ),
    )
}

/// The instances serving on `port`, with the pid that answered for each:
/// fresh connections until both instances have answered (the kernel spreads
/// new connections over the instances' sockets).
fn serving(port: u16) -> BTreeMap<String, u64> {
    let mut seen = BTreeMap::new();
    wait_for(Duration::from_secs(30), "both instances to answer", || {
        if let Ok((200, body)) = get_fresh(port, "/") {
            let v: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
            seen.insert(
                v["instance"].as_str().unwrap().to_string(),
                v["pid"].as_u64().unwrap(),
            );
        }
        (seen.len() == 2).then(|| seen.clone())
    })
}

/// Reloads `name` [`RELOADS`] times under keep-alive load on `port`, after
/// checking that both instances serve. Asserts that every serving process
/// was replaced and that the new processes served under the load too; what
/// the load saw.
fn reload_under_keep_alive_load(supd: &Supd, name: &str, port: u16) -> Outcome {
    let before = serving(port);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["instance-0", "instance-1"],
        "{name}: each instance serves"
    );
    let load = KeepAliveLoad::start(port, "/", CONNECTIONS);
    for _ in 0..RELOADS {
        supd.ok(&["reload", name]);
    }
    let after = serving(port);
    let outcome = load.finish();
    let old: BTreeSet<u64> = before.values().copied().collect();
    assert!(
        after.values().all(|pid| !old.contains(pid)),
        "{name}: every process was replaced: {before:?} then {after:?}"
    );
    let new_instances: BTreeSet<&str> = outcome
        .served
        .keys()
        .filter(|who| !old.contains(&who.pid))
        .map(|who| who.instance.as_str())
        .collect();
    assert_eq!(
        new_instances.len(),
        2,
        "{name}: new processes of both instances served the load: {:?}",
        outcome.served
    );
    outcome
}

/// Asserts that a load failed no request and ran at least `at_least`.
fn no_failure(name: &str, outcome: &Outcome, at_least: u64) {
    assert!(
        outcome.ok >= at_least,
        "{name}: {} requests answered",
        outcome.ok
    );
    let shown: Vec<String> = outcome
        .failures
        .iter()
        .take(5)
        .map(|f| f.to_string())
        .collect();
    assert!(
        outcome.failures.is_empty(),
        "{name}: {} of {} requests failed during {RELOADS} reloads: {shown:#?}",
        outcome.failures.len(),
        outcome.ok + outcome.failures.len() as u64
    );
}

#[test]
fn express_unmodified_reloads_under_keep_alive_load_without_a_failed_request() {
    let supd = Supd::new();
    let port = start_node(&supd, "express", "express-app.js");
    let outcome = reload_under_keep_alive_load(&supd, "express", port);
    no_failure("express", &outcome, 100);
}

#[test]
fn fastify_unmodified_reloads_under_keep_alive_load_without_a_failed_request() {
    let supd = Supd::new();
    let port = start_node(&supd, "fastify", "fastify-app.js");
    let outcome = reload_under_keep_alive_load(&supd, "fastify", port);
    no_failure("fastify", &outcome, 100);
}

/// gunicorn, the supd way: one master per instance slot, each with one
/// worker, on the slot's socket. gunicorn takes it from `LISTEN_FDS` and
/// `LISTEN_PID` (systemd socket activation: no `--bind`), says `READY=1`
/// on `NOTIFY_SOCKET` once its master has booted, and drains on SIGTERM
/// (SIGINT is its quick shutdown). The gthread worker keeps connections
/// alive; on stop it answers a request that arrives on one with
/// `Connection: close` and closes the idle ones after two seconds.
#[test]
fn gunicorn_reloads_under_keep_alive_load_without_a_failed_request() {
    let bin = install::python();
    let supd = Supd::new();
    let port = start_cluster(
        &supd,
        "gunicorn",
        &format!(
            "script = \"{}\"\nargs = [\"--workers\", \"1\", \"--worker-class\", \"gthread\", \"--threads\", \"4\", \"--chdir\", \"{}\", \"flask_app:app\"]\nkill_signal = \"SIGTERM\"\nwait_ready = true\nlisten_timeout = \"20s\"\nkill_timeout = \"10s\"\n",
            bin.join("gunicorn").display(),
            install::fixtures().display()
        ),
    );
    let outcome = reload_under_keep_alive_load(&supd, "gunicorn", port);
    no_failure("gunicorn", &outcome, 100);
    // It served from the daemon's socket, not from a port of its own.
    let log = std::fs::read_to_string(supd.home().join("logs/gunicorn-err.log")).unwrap();
    assert!(
        log.contains(&format!(":{port} ")),
        "gunicorn listened on the daemon's port {port}: {log}"
    );
}

/// uvicorn on the daemon's socket (`--fd 3`). On its stop signal uvicorn
/// closes every idle keep-alive connection at once, so a client that has
/// just sent its next request on one sees the connection close under it:
/// no supervisor can save those (docs/cluster.md, "Real software"). What it
/// costs is bounded: only such closes (never a refused connection, a
/// timeout or an error status), at most one per connection per stopped
/// process.
#[test]
fn uvicorn_reloads_under_keep_alive_load_losing_only_requests_on_connections_it_closes() {
    let bin = install::python();
    let supd = Supd::new();
    let port = start_cluster(
        &supd,
        "uvicorn",
        &format!(
            "script = \"{}\"\nargs = [\"--fd\", \"3\", \"--app-dir\", \"{}\", \"starlette_app:app\"]\nkill_signal = \"SIGTERM\"\nkill_timeout = \"10s\"\n",
            bin.join("uvicorn").display(),
            install::fixtures().display()
        ),
    );
    let outcome = reload_under_keep_alive_load(&supd, "uvicorn", port);
    assert!(
        outcome.ok >= 100,
        "uvicorn: {} requests answered",
        outcome.ok
    );
    let bound = CONNECTIONS * RELOADS * 2;
    let closes = outcome
        .failures
        .iter()
        .filter(|f| matches!(f.kind.as_str(), "closed" | "reset" | "broken pipe"))
        .count();
    assert!(
        closes == outcome.failures.len() && closes <= bound,
        "uvicorn: failures are closes of kept-alive connections, at most {bound}: {:#?}",
        outcome.failures
    );
}
