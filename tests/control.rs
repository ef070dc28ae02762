//! The daemon and its control socket: one per home, permissions, hostile
//! clients.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::support::{Supd, alive, bin, wait_for};

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn read_reply(stream: &mut UnixStream) -> serde_json::Value {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).expect("reply header");
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).expect("reply body");
    serde_json::from_slice(&body).expect("reply is JSON")
}

fn connect(supd: &Supd) -> UnixStream {
    let s = UnixStream::connect(supd.home().join("supd.sock")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn home_and_socket_permissions_and_one_daemon_per_home() {
    let supd = Supd::new();
    let out = supd.ok(&["ping"]);
    assert!(out.starts_with("pong"), "{out}");
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(supd.home()), 0o700);
    assert_eq!(mode(supd.home().join("supd.sock")), 0o600);
    let first = supd.daemon_pid().unwrap();

    // A second daemon for the same home refuses to start, and the first keeps serving.
    let second = std::process::Command::new(bin("supd"))
        .env("SUPD_HOME", supd.home())
        .output()
        .expect("run supd");
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));
    assert!(alive(first));
    assert_eq!(supd.daemon_pid(), Some(first));
    supd.ok(&["ping"]);

    // Two homes, two daemons, side by side.
    let other = Supd::new();
    other.ok(&["ping"]);
    assert_ne!(other.daemon_pid(), Some(first));

    supd.ok(&["kill"]);
    assert!(!alive(first));
    assert!(!supd.home().join("supd.sock").exists());
    assert_eq!(supd.ok(&["kill"]).trim(), "supd is not running");
}

#[test]
fn hostile_bytes_never_crash_the_daemon() {
    let supd = Supd::new();
    supd.ok(&["ping"]);
    let pid = supd.daemon_pid().unwrap();

    // Not JSON: an error reply, and the connection still works.
    let mut s = connect(&supd);
    s.write_all(&frame(b"\xff\xfe not json")).unwrap();
    let reply = read_reply(&mut s);
    assert_eq!(reply["type"], "error", "{reply}");
    s.write_all(&frame(br#"{"cmd":"no_such_command"}"#))
        .unwrap();
    assert_eq!(read_reply(&mut s)["type"], "error");
    s.write_all(&frame(
        br#"{"cmd":"start","apps":[{"name":1}],"base_env":{}}"#,
    ))
    .unwrap();
    assert_eq!(read_reply(&mut s)["type"], "error");
    s.write_all(&frame(br#"{"cmd":"ping"}"#)).unwrap();
    assert_eq!(read_reply(&mut s)["type"], "pong");

    // Oversized: an error reply, then the connection is closed.
    let mut s = connect(&supd);
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let reply = read_reply(&mut s);
    assert!(
        reply["message"].as_str().unwrap().contains("exceeds"),
        "{reply}"
    );
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "closed after an oversized frame"
    );

    // Truncated frame, then hang-up; and garbage headers of every size.
    let mut s = connect(&supd);
    s.write_all(&[0, 0, 1, 0, b'{', b'"']).unwrap();
    drop(s);
    for junk in [
        &b"\x00"[..],
        b"\x00\x00\x00",
        b"GET / HTTP/1.1\r\n\r\n",
        &[0u8; 4],
    ] {
        let mut s = connect(&supd);
        let _ = s.write_all(junk);
    }

    assert!(alive(pid));
    assert!(supd.ok(&["ping"]).starts_with("pong"));
    assert_eq!(supd.daemon_pid(), Some(pid));
}

#[test]
fn idle_connections_do_not_delay_a_ping() {
    let supd = Supd::new();
    supd.ok(&["ping"]);
    let idle: Vec<UnixStream> = (0..200).map(|_| connect(&supd)).collect();
    // Half of them even start a frame and stall.
    for s in idle.iter().take(100) {
        (&*s).write_all(&[0, 0, 0, 9]).unwrap();
    }
    let started = std::time::Instant::now();
    assert!(supd.ok(&["ping"]).starts_with("pong"));
    // A liveness bound, not a benchmark: a ping queued behind 200 idle
    // clients would take the idle time (forever) to answer.
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(idle);
}

#[test]
fn a_kill_whose_client_went_away_still_ends_the_daemon() {
    let supd = Supd::new();
    let release = supd.start_lingering("slow");
    let daemon = supd.daemon_pid().unwrap();
    let mut kill = supd.cmd(&["kill"]).spawn().unwrap();
    wait_for(Duration::from_secs(10), "the app stopping", || {
        (supd.instance("slow", 0)["status"] == "stopping").then_some(())
    });
    // Ctrl-C on `supctl kill` while the daemon waits for the app.
    kill.kill().unwrap();
    kill.wait().unwrap();
    drop(release);
    wait_for(Duration::from_secs(20), "the daemon exited", || {
        (!alive(daemon)).then_some(())
    });
}
