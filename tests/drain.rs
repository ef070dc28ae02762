//! The drain (docs/cluster.md, "The drain"): reloads and restarts under a
//! keep-alive load that never retries fail no request, for the services
//! and for unmodified Node apps under supd's preload; and, one connection at
//! a time, what a draining instance does with a request in flight, a request
//! sent on a kept-alive connection after the stop signal, and an idle
//! connection.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cluster::wait_online;
use crate::support::{
    Connection, KeepAliveLoad, Load, Supd, alive, bin, fixture, free_port, wait_for,
};

/// The program of a test app.
enum Program {
    /// A service binary of this workspace.
    Service(&'static str),
    /// A Node app of tests/fixtures, run as `node FILE` (with the preload).
    Node(&'static str),
}

impl Program {
    /// Its `script` (and `args`) lines.
    fn toml(&self) -> String {
        match self {
            Program::Service(name) => format!("script = \"{}\"\n", bin(name).display()),
            Program::Node(file) => format!(
                "script = \"node\"\nargs = [\"{}\"]\n",
                fixture(file).display()
            ),
        }
    }
}

/// Starts `program` as app `name` with a daemon-held `port`: `instances`
/// in cluster mode, or one in fork mode (`None`), each ready when it says
/// so. `kill_timeout` is left at its default (1.6 s): a drain must fit in it.
fn start(
    supd: &Supd,
    name: &str,
    program: &Program,
    port: u16,
    instances: Option<u32>,
    extra: &str,
) {
    let mode = match instances {
        Some(n) => format!("exec_mode = \"cluster\"\ninstances = {n}\n"),
        None => String::new(),
    };
    let file = supd.write(
        &format!("{name}.toml"),
        &format!(
            "[[apps]]\nname = \"{name}\"\n{}{mode}port = {port}\nwait_ready = true\nlisten_timeout = \"10s\"\n{extra}",
            program.toml()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
}

/// Waits until every pid of `pids` has answered some of `load`'s requests.
fn wait_served_by(load: &Load, pids: &[u64]) {
    wait_for(
        Duration::from_secs(20),
        &format!("the load served by {pids:?}"),
        || pids.iter().all(|p| load.pids().contains(p)).then_some(()),
    );
}

/// Three reloads of `name` (`instances` of them) under a keep-alive load
/// of `connections` on `path`: no request fails, and the last instances
/// serve the load.
pub fn reloads_fail_nothing(
    supd: &Supd,
    name: &str,
    port: u16,
    path: &'static str,
    instances: usize,
) {
    let before = wait_online(supd, name, instances);
    let load = KeepAliveLoad::start(port, path, 8 * instances);
    wait_served_by(&load, &before);
    for _ in 0..3 {
        supd.ok(&["reload", name]);
    }
    let after = wait_online(supd, name, instances);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every pid replaced"
    );
    wait_served_by(&load, &after);
    let outcome = load.finish_without_failures(100);
    println!(
        "{name}: {} requests on kept-alive connections through 3 reloads, 0 failed",
        outcome.ok
    );
}

#[test]
fn a_service_in_cluster_mode_reloads_under_keep_alive_load_without_a_failure() {
    let supd = Supd::new();
    let port = free_port();
    start(
        &supd,
        "gateway",
        &Program::Service("api-gateway"),
        port,
        Some(4),
        "",
    );
    reloads_fail_nothing(&supd, "gateway", port, "/health", 4);
}

#[test]
fn an_unmodified_node_app_in_cluster_mode_reloads_under_keep_alive_load_without_a_failure() {
    let supd = Supd::new();
    let port = free_port();
    start(
        &supd,
        "plain",
        &Program::Node("unmodified.js"),
        port,
        Some(2),
        "",
    );
    reloads_fail_nothing(&supd, "plain", port, "/", 2);
}

#[test]
fn a_fork_app_restarts_under_keep_alive_load_without_a_failure() {
    let supd = Supd::new();
    let port = free_port();
    start(
        &supd,
        "users",
        &Program::Service("user-service"),
        port,
        None,
        "",
    );
    let first = wait_online(&supd, "users", 1);
    let load = KeepAliveLoad::start(port, "/health", 8);
    wait_served_by(&load, &first);
    // Stop, then start: the held socket queues the clients in between.
    for _ in 0..2 {
        supd.ok(&["restart", "users"]);
    }
    let last = wait_online(&supd, "users", 1);
    assert_ne!(first, last);
    wait_served_by(&load, &last);
    load.finish_without_failures(100);
}

/// Where `/proc/PID/fd/FD` points (`socket:[INODE]`), if it is open.
fn fd_target(pid: u32, fd: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// Sends the stop signal to the one instance of app `name` (on `port`) and
/// checks its drain, connection by connection: a request in flight (`slow`)
/// and one sent on a kept-alive connection after the signal are answered
/// with `Connection: close` and their connections closed; an idle
/// connection is closed, but only after the grace (1 s); then the process
/// exits by itself.
fn assert_drain(supd: &Supd, name: &str, port: u16, path: &str, slow: &str) {
    let pid = supd.instance(name, 0)["pid"].as_u64().expect("a pid") as u32;
    let listener = fd_target(pid, 3).expect("supd's socket on fd 3");
    let (mut next, mut idle, mut busy) = (
        Connection::open(port).unwrap(),
        Connection::open(port).unwrap(),
        Connection::open(port).unwrap(),
    );
    for conn in [&mut next, &mut idle] {
        let answer = conn.get(path).expect("served before the signal");
        assert!(answer.status == 200 && !answer.close, "{answer:?}");
    }
    busy.send(slow).unwrap();

    let signalled = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    wait_for(
        Duration::from_secs(5),
        "the instance to stop accepting (to close its fd 3)",
        || (fd_target(pid, 3).as_ref() != Some(&listener)).then_some(()),
    );

    let answer = next
        .get(path)
        .expect("a request sent on a kept-alive connection during the drain is answered");
    assert!(answer.status == 200 && answer.close, "{answer:?}");
    assert!(
        next.closed_within(Duration::from_secs(2)).unwrap(),
        "the connection closes after that answer"
    );
    let answer = busy.receive().expect("the request in flight is answered");
    assert!(answer.status == 200 && answer.close, "{answer:?}");
    assert!(
        idle.closed_within(Duration::from_secs(5)).unwrap(),
        "an idle connection is closed at the end of the grace"
    );
    let closed = signalled.elapsed();
    assert!(
        closed >= Duration::from_millis(950),
        "an idle connection is kept for the grace (1 s), closed after {closed:?}"
    );
    wait_for(
        Duration::from_secs(10),
        "the drained process to exit",
        || (!alive(pid)).then_some(()),
    );
}

#[test]
fn a_draining_service_answers_requests_on_open_connections_and_closes_idle_ones_after_the_grace() {
    let supd = Supd::new();
    let port = free_port();
    let debug = "[apps.env]\nSERVICE_DEBUG_ROUTES = \"1\"\n";
    start(
        &supd,
        "users",
        &Program::Service("user-service"),
        port,
        None,
        debug,
    );
    assert_drain(&supd, "users", port, "/health", "/debug/slow?ms=500");
}

#[test]
fn a_draining_node_app_answers_requests_on_open_connections_and_closes_idle_ones_after_the_grace() {
    let supd = Supd::new();
    let port = free_port();
    start(
        &supd,
        "plain",
        &Program::Node("unmodified.js"),
        port,
        None,
        "",
    );
    assert_drain(&supd, "plain", port, "/", "/slow");
}

#[test]
fn a_node_app_listening_on_fd_3_itself_is_ready_and_drains() {
    let supd = Supd::new();
    let port = free_port();
    // wait_ready: `start` succeeds only because the preload said ready.
    start(&supd, "fd3", &Program::Node("fd3.js"), port, None, "");
    assert_drain(&supd, "fd3", port, "/", "/slow");
}
