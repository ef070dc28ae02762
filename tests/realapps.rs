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

pub mod install;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::support::{KeepAliveLoad, Load, Supd, free_port, get_fresh, wait_for};

/// One real app at a time: each runs a load beside interpreters that start
/// and stop, and two of them at once on two cores slow each other's starts
/// past any bound worth waiting for.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Waits for the other real-app tests (a failed one does not block the rest).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

/// A Node app of the fixtures, unmodified, without `wait_ready`: supd's own
/// rule makes it ready when it listens (checked on `show`'s `ready` line).
/// `listen_timeout` only bounds that wait: 3 s by default, which a Node
/// start can exceed while a debug daemon, the load and other tests share two
/// cores. The frameworks come from `NODE_PATH`.
fn start_node(supd: &Supd, name: &str, script: &str) -> u16 {
    let node_modules = install::node();
    let port = start_cluster(
        supd,
        name,
        &format!(
            "script = \"node\"\nargs = [\"{}\"]\nlisten_timeout = \"20s\"\n[apps.env]\nNODE_PATH = \"{}\"\n",
            install::fixtures().join(script).display(),
            node_modules.display()
        ),
    );
    let show = supd.ok(&["show", name]);
    assert!(
        show.contains(&format!("when it listens on port {port} (Node)")),
        "{name} is ready when it listens, with no key: {show}"
    );
    port
}

/// The processes serving on `port` that are not in `old`, by instance:
/// fresh connections until both instances have answered from a new process
/// (the kernel spreads new connections over the instances' sockets; a
/// replaced process no longer accepts).
fn serving(port: u16, old: &BTreeSet<u64>) -> BTreeMap<String, u64> {
    let mut seen = BTreeMap::new();
    wait_for(Duration::from_secs(30), "both instances to answer", || {
        if let Ok((200, body)) = get_fresh(port, "/") {
            let v: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
            let pid = v["pid"].as_u64().unwrap();
            if !old.contains(&pid) {
                seen.insert(v["instance"].as_str().unwrap().to_string(), pid);
            }
        }
        (seen.len() == 2).then(|| seen.clone())
    })
}

/// Reloads `name` [`RELOADS`] times under keep-alive load on `port`, each
/// time until both instances serve from new processes (an app that has no
/// readiness is online at spawn, and `reload` returns before it serves). The
/// load, still running, and the pids of the first processes.
fn reload_under_keep_alive_load(supd: &Supd, name: &str, port: u16) -> (Load, BTreeSet<u64>) {
    let first = serving(port, &BTreeSet::new());
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["instance-0", "instance-1"],
        "{name}: each instance serves"
    );
    let load = KeepAliveLoad::start(port, "/", CONNECTIONS);
    let mut old: BTreeSet<u64> = first.values().copied().collect();
    for _ in 0..RELOADS {
        supd.ok(&["reload", name]);
        old.extend(serving(port, &old).values());
    }
    (load, first.values().copied().collect())
}

/// Asserts that new processes of both instances (pids not in `old`) served
/// the load: `served` is each (instance, pid) that answered.
fn new_processes_served<'a>(
    name: &str,
    old: &BTreeSet<u64>,
    served: impl Iterator<Item = (&'a str, u64)>,
) {
    let served: Vec<(&str, u64)> = served.collect();
    let new: BTreeSet<&str> = served
        .iter()
        .filter(|(_, pid)| !old.contains(pid))
        .map(|(instance, _)| *instance)
        .collect();
    assert_eq!(
        new.len(),
        2,
        "{name}: new processes of both instances served the load: {served:?}"
    );
}

/// Reloads `name` under keep-alive load: no request may fail, and the new
/// processes of both instances serve.
fn reloads_without_a_failed_request(supd: &Supd, name: &str, port: u16) {
    let (load, old) = reload_under_keep_alive_load(supd, name, port);
    let outcome = load.finish_without_failures(100);
    new_processes_served(
        name,
        &old,
        outcome.served.keys().map(|w| (w.instance.as_str(), w.pid)),
    );
}

#[test]
fn express_unmodified_reloads_under_keep_alive_load_without_a_failed_request() {
    let _one = one_at_a_time();
    let supd = Supd::new();
    let port = start_node(&supd, "express", "express-app.js");
    reloads_without_a_failed_request(&supd, "express", port);
}

#[test]
fn fastify_unmodified_reloads_under_keep_alive_load_without_a_failed_request() {
    let _one = one_at_a_time();
    let supd = Supd::new();
    let port = start_node(&supd, "fastify", "fastify-app.js");
    reloads_without_a_failed_request(&supd, "fastify", port);
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
    let _one = one_at_a_time();
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
    reloads_without_a_failed_request(&supd, "gunicorn", port);
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
/// process (a connection closed by one old process may reconnect to the
/// other old one, stopped next in the same reload).
#[test]
fn uvicorn_reloads_under_keep_alive_load_losing_only_requests_on_connections_it_closes() {
    let _one = one_at_a_time();
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
    let (load, old) = reload_under_keep_alive_load(&supd, "uvicorn", port);
    let outcome = load.finish();
    new_processes_served(
        "uvicorn",
        &old,
        outcome.served.keys().map(|w| (w.instance.as_str(), w.pid)),
    );
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
