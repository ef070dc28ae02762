//! Where a daemon-held port listens: `host` (and `--host`) binds that
//! address only; without it the port answers on IPv4 and IPv6 alike. `list`
//! and `show` say where; a bad host is refused before anything starts; the
//! address survives a reload, an update and a daemon crash.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::cluster::cluster_file;
use crate::support::{Supd, bin, free_port, wait_for};

const LOCAL4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCAL6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// `GET /health` on a fresh connection to `ip`:`port`: the status code, or
/// how the connection failed.
fn get(ip: IpAddr, port: u16) -> Result<u16, ErrorKind> {
    let exchange = || -> std::io::Result<u16> {
        let mut stream = TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not HTTP: {response:?}")))
    };
    exchange().map_err(|e| e.kind())
}

/// Asserts that `ip`:`port` answers 200.
fn assert_answers(ip: IpAddr, port: u16) {
    assert_eq!(get(ip, port), Ok(200), "{ip} port {port} should answer");
}

/// Asserts that a connection to `ip`:`port` is refused: nothing listens there.
fn assert_refused(ip: IpAddr, port: u16) {
    assert_eq!(
        get(ip, port),
        Err(ErrorKind::ConnectionRefused),
        "{ip} port {port} should refuse"
    );
}

/// The machine's own address of the family of `far` that is not loopback,
/// if it has one: the source of a route out (a UDP connect sends nothing).
fn outside_address(far: IpAddr) -> Option<IpAddr> {
    let any: IpAddr = if far.is_ipv6() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((any, 0)).ok()?;
    socket.connect((far, 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The machine's non-loopback IPv4 address, if any.
fn outside4() -> Option<IpAddr> {
    outside_address(Ipv4Addr::new(198, 51, 100, 1).into())
}

/// The machine's non-loopback IPv6 address, if any.
fn outside6() -> Option<IpAddr> {
    outside_address("2001:db8::1".parse().unwrap())
}

/// The TCP sockets listening on `port`, one line each, as `ss -e` prints
/// them: `LISTEN 0 4096 127.0.0.1:P 0.0.0.0:* ino:123 …`.
fn ss(port: u16) -> Vec<String> {
    let out = std::process::Command::new("ss")
        .args(["-Hltne", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is installed");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// The local addresses of the sockets listening on `port`, as `ss` writes
/// them (`127.0.0.1:P`, `[::1]:P`, `*:P` for dual-stack `::`).
fn listening(port: u16) -> Vec<String> {
    ss(port)
        .iter()
        .filter_map(|line| line.split_whitespace().nth(3).map(String::from))
        .collect()
}

/// The inodes of the sockets listening on `port`: the same sockets keep them.
fn inodes(port: u16) -> Vec<String> {
    let mut inodes: Vec<String> = ss(port)
        .iter()
        .filter_map(|line| line.split_whitespace().find(|w| w.starts_with("ino:")))
        .map(String::from)
        .collect();
    inodes.sort();
    inodes
}

/// Asserts that `port` has `slots` listening sockets, each on `address`
/// as `ss` writes it (within seconds: replaced processes may still be
/// closing the old ones).
fn assert_listening(port: u16, address: &str, slots: usize) {
    let want = vec![format!("{address}:{port}"); slots];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = listening(port);
    while found != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        found = listening(port);
    }
    assert_eq!(found, want, "ss -ltn for port {port}");
}

/// Asserts that every `list --json` row of `name` and its `show --json`
/// say the port listens on `host`, and that `show` writes it.
fn assert_reported(supd: &Supd, name: &str, host: &str, shown: &str) {
    let rows: Vec<_> = supd
        .list()
        .into_iter()
        .filter(|p| p["name"] == name)
        .collect();
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row["host"], host, "{row}");
    }
    let show = supd.show(name);
    assert_eq!(show["host"], host, "{show}");
    assert_eq!(show["instances"][0]["host"], host, "{show}");
    let page = supd.ok(&["show", name]);
    let line = page
        .lines()
        .find(|l| l.starts_with("host "))
        .unwrap_or_else(|| panic!("no host line:\n{page}"));
    assert_eq!(
        line.split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" "),
        shown
    );
}

/// Starts `instances` user-service instances of app `name` on `port` with
/// `keys` (TOML lines); returns the file.
fn start(supd: &Supd, name: &str, port: u16, instances: u32, keys: &str) -> String {
    let file = cluster_file(supd, name, port, instances, keys);
    supd.ok(&["start", &file]);
    file
}

#[test]
fn a_loopback_host_listens_on_loopback_only() {
    let supd = Supd::new();
    let port = free_port();
    start(&supd, "internal", port, 2, "host = \"127.0.0.1\"");
    assert_listening(port, "127.0.0.1", 2);
    assert_answers(LOCAL4, port);
    assert_refused(LOCAL6, port);
    for outside in [outside4(), outside6()].into_iter().flatten() {
        assert_refused(outside, port);
    }
    assert_reported(&supd, "internal", "127.0.0.1", "127.0.0.1");
    assert_eq!(supd.show("internal")["config"]["host"], "127.0.0.1");
}

#[test]
fn without_a_host_the_port_answers_on_ipv4_and_ipv6() {
    let supd = Supd::new();
    let port = free_port();
    start(&supd, "gateway", port, 2, "");
    assert_listening(port, "*", 2);
    assert_answers(LOCAL4, port);
    assert_answers(LOCAL6, port);
    for outside in [outside4(), outside6()].into_iter().flatten() {
        assert_answers(outside, port);
    }
    assert_reported(&supd, "gateway", "::", ":: (every interface, IPv4 too)");
    assert!(supd.show("gateway")["config"]["host"].is_null());
}

/// `localhost` is 127.0.0.1 (one socket per slot; IPv4's loopback is there
/// even without IPv6), and `--host` takes the same forms for a program
/// started ad hoc.
#[test]
fn localhost_and_an_ipv6_host_from_the_command_line() {
    let supd = Supd::new();
    let port = free_port();
    start(&supd, "named", port, 1, "host = \"localhost\"");
    assert_listening(port, "127.0.0.1", 1);
    assert_reported(&supd, "named", "127.0.0.1", "127.0.0.1");

    let port = free_port();
    let service = bin("user-service");
    let (service, port_text) = (service.to_str().unwrap(), port.to_string());
    supd.ok(&[
        "start", service, "--name", "six", "-i", "2", "--port", &port_text, "--host", "::1",
    ]);
    wait_for(Duration::from_secs(10), "::1 to answer", || {
        get(LOCAL6, port).ok()
    });
    assert_listening(port, "[::1]", 2);
    assert_answers(LOCAL6, port);
    assert_refused(LOCAL4, port);
    assert_reported(&supd, "six", "::1", "::1");
}

#[test]
fn a_bad_host_is_refused_where_it_is_written() {
    let supd = Supd::new();
    let port = free_port();
    let cases = [
        (
            "\"300.1.1.1\"",
            "\"300.1.1.1\" is not an IP address; write an IPv4 or IPv6 address such as \"127.0.0.1\" or \"::1\", or \"localhost\" (host names are not resolved)",
        ),
        ("\"example.com\"", "\"example.com\" is not an IP address"),
        ("\"\"", "must not be empty"),
    ];
    for (host, message) in cases {
        let file = supd.write(
            "bad.toml",
            &format!("[[apps]]\nname = \"web\"\nscript = \"x\"\nport = {port}\nhost = {host}\n"),
        );
        let file = file.to_str().unwrap();
        for command in ["check", "start"] {
            let err = supd.fails(&[command, file]);
            let want = format!("error: {file}:5:8: apps[0].host: {message}");
            assert!(err.starts_with(&want), "{command} {host}: {err}");
            assert_eq!(err.lines().count(), 1, "{command} {host}: {err}");
        }
    }
    let file = supd.write(
        "portless.toml",
        "[[apps]]\nname = \"web\"\nscript = \"x\"\nhost = \"127.0.0.1\"\n",
    );
    let err = supd.fails(&["check", file.to_str().unwrap()]);
    assert!(
        err.contains("portless.toml:4:8: apps[0].host: has no effect without port"),
        "{err}"
    );

    let port_text = port.to_string();
    let err = supd.fails(&["start", "sleep", "--port", &port_text, "--host", "nonsense"]);
    assert_eq!(
        err,
        "error: app \"sleep\": --host: \"nonsense\" is not an IP address; write an IPv4 or IPv6 address such as \"127.0.0.1\" or \"::1\", or \"localhost\" (host names are not resolved)\n"
    );
    let err = supd.fails(&["start", "sleep", "--host", "::1", "--", "60"]);
    assert_eq!(
        err,
        "error: app \"sleep\": host: has no effect without port\n"
    );
    assert!(supd.daemon_pid().is_none(), "nothing was started");

    // An address the machine does not have (TEST-NET-3) fails at start,
    // naming it; the daemon goes on.
    let err = supd.fails(&[
        "start",
        "sleep",
        "--port",
        &port_text,
        "--host",
        "203.0.113.7",
        "--",
        "60",
    ]);
    assert!(
        err.contains(&format!(
            "app \"sleep\": cannot bind port {port} on 203.0.113.7: Cannot assign requested address"
        )),
        "{err}"
    );
    supd.ok(&["ping"]);
}

/// A reload that changes the host moves the port there; `update` and a
/// daemon crash keep it where it is.
#[test]
fn the_host_is_kept_by_update_and_takeover_and_moved_by_reload() {
    let supd = Supd::new();
    let port = free_port();
    let file = start(&supd, "users", port, 2, "");
    assert_listening(port, "*", 2);

    std::fs::write(
        &file,
        std::fs::read_to_string(&file).unwrap() + "host = \"127.0.0.1\"\n",
    )
    .unwrap();
    supd.ok(&["reload", &file]);
    assert_listening(port, "127.0.0.1", 2);
    assert_refused(LOCAL6, port);
    assert_answers(LOCAL4, port);
    assert_reported(&supd, "users", "127.0.0.1", "127.0.0.1");

    // The very sockets travel: an update hands them over, the next daemon
    // after a crash takes them from the old instances (started by `list`).
    let sockets = inodes(port);
    supd.ok(&["update"]);
    assert_listening(port, "127.0.0.1", 2);
    assert_eq!(inodes(port), sockets, "the same sockets after update");
    assert_answers(LOCAL4, port);
    assert_reported(&supd, "users", "127.0.0.1", "127.0.0.1");

    let old = supd.crash();
    let rows = supd.list();
    let online = rows
        .iter()
        .filter(|p| {
            p["status"] == "online" && !old.contains(&(p["pid"].as_u64().unwrap_or(0) as u32))
        })
        .count();
    assert_eq!(online, 2, "{rows:?}");
    assert_listening(port, "127.0.0.1", 2);
    assert_eq!(inodes(port), sockets, "the same sockets after a takeover");
    assert_refused(LOCAL6, port);
    assert_answers(LOCAL4, port);
    assert_reported(&supd, "users", "127.0.0.1", "127.0.0.1");
}
