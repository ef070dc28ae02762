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

/// The daemon's resident memory, from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a VmRSS line");
    kib << 10
}

/// Connects without blocking in a full backlog (a daemon that stopped
/// accepting); panics after 5 s of that.
fn connect_bounded(supd: &Supd) -> UnixStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    use std::os::fd::AsRawFd;
    let addr = UnixAddr::new(&supd.home().join("supd.sock")).unwrap();
    let fd = wait_for(Duration::from_secs(5), "the daemon to accept", || {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => Some(fd),
            Err(nix::errno::Errno::EAGAIN) => None,
            Err(e) => panic!("connect: {e}"),
        }
    });
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Starts the daemon with `vars` in its environment.
fn start_with_env(supd: &Supd, vars: &[(&str, &str)]) -> u32 {
    supd.start_with(|cmd| {
        cmd.envs(vars.iter().copied());
    });
    supd.daemon_pid().unwrap()
}

/// Reads the one error frame a closing daemon sends, then end of file.
fn read_last_words(stream: &mut UnixStream) -> String {
    let reply = read_reply(stream);
    assert_eq!(reply["type"], "error", "{reply}");
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0, "closed after");
    reply["message"].as_str().unwrap().to_string()
}

#[test]
fn stalled_huge_frames_cost_a_bounded_budget_that_is_given_back() {
    const CLIENTS: usize = 40;
    let supd = Supd::new();
    let pid = start_with_env(&supd, &[("SUPD_CONTROL_IDLE_TIMEOUT", "4s")]);
    // A frame the size of the protocol's cap still goes through alone.
    let mut s = connect(&supd);
    let mut big = br#"{"cmd":"ping","pad":""#.to_vec();
    big.resize(15 << 20, b'x');
    big.extend_from_slice(br#""}"#);
    s.write_all(&frame(&big)).unwrap();
    assert_eq!(read_reply(&mut s)["type"], "pong");
    drop((s, big));
    let baseline = wait_for(
        Duration::from_secs(10),
        "the 15 MiB frame given back",
        || {
            let rss = rss_bytes(pid);
            (rss < 40 << 20).then_some(rss)
        },
    );

    // Forty clients announce 16 MiB and send all of it but the last byte.
    let body = std::sync::Arc::new(vec![b' '; (16 << 20) - 1]);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut s = connect(&supd);
            s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
            let body = body.clone();
            std::thread::spawn(move || {
                s.write_all(&(16u32 << 20).to_be_bytes()).unwrap();
                let sent = s.write_all(&body);
                (s, sent.is_ok())
            })
        })
        .collect();
    let clients: Vec<(UnixStream, bool)> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    let stalled = clients.iter().filter(|(_, sent)| *sent).count();
    let peak = rss_bytes(pid);
    // Meanwhile the daemon answers.
    let started = std::time::Instant::now();
    supd.ok(&["list"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The budget (64 MiB across connections) bounds what they hold: the
    // daemon did not take 40 x 16 MiB.
    let grew = peak.saturating_sub(baseline) >> 20;
    assert!(
        grew < 100,
        "RSS grew by {grew} MiB ({stalled} of {CLIENTS} stalled)"
    );
    // The refused ones were told why.
    for (mut s, sent) in clients.into_iter().filter(|(_, sent)| !sent).take(3) {
        assert!(!sent);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.contains("the daemon is busy") && text.contains("bytes of requests buffered"),
            "{text}"
        );
    }
    // The stalled ones are closed at the idle timeout, and the memory comes back.
    let settled = wait_for(
        Duration::from_secs(20),
        "RSS back near its baseline",
        || {
            let rss = rss_bytes(pid);
            (rss < baseline + (8 << 20)).then_some(rss)
        },
    );
    eprintln!(
        "baseline {} MiB, peak {} MiB ({stalled} stalled), after {} MiB",
        baseline >> 20,
        peak >> 20,
        settled >> 20
    );
    assert!(alive(pid));
}

#[test]
fn idle_connections_past_the_cap_give_way_and_supervising_goes_on() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    use std::os::unix::process::CommandExt;
    const IDLE: usize = 3000;
    // This test holds thousands of descriptors.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= IDLE as u64 + 200,
        "the hard open-files limit {hard} is too low"
    );
    let supd = Supd::new();
    // A daemon whose hard limit is 2048: its connections get a quarter.
    supd.start_with(|cmd| {
        // SAFETY: setrlimit is a plain system call, fine between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                setrlimit(Resource::RLIMIT_NOFILE, 2048, 2048).map_err(std::io::Error::from)
            });
        }
    });
    let daemon = supd.daemon_pid().unwrap();
    let crasher = supd.script("crash.sh", "sleep 1; exit 3");
    supd.start_script(
        "crasher",
        &crasher,
        "restart_delay = 100\nmax_restarts = 1000\n",
    );
    let before = supd.instance("crasher", 0)["restarts"].as_u64().unwrap();

    let idle: Vec<UnixStream> = (0..IDLE).map(|_| connect_bounded(&supd)).collect();
    let fds = std::fs::read_dir(format!("/proc/{daemon}/fd"))
        .unwrap()
        .count();
    assert!(fds < 512 + 100, "the daemon holds {fds} descriptors");
    let started = std::time::Instant::now();
    supd.ok(&["list"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "list took {:?}",
        started.elapsed()
    );
    // The oldest gave way, and were told why.
    let mut first = idle.into_iter().next().unwrap();
    let message = read_last_words(&mut first);
    assert!(message.contains("quietest"), "{message}");
    // The app that keeps crashing keeps being restarted.
    supd.wait_instance(
        "crasher",
        0,
        "a restart while the connections are held",
        |p| p["restarts"].as_u64().unwrap() >= before + 2 && p["status"] != "errored",
    );
    assert!(alive(daemon));
}

#[test]
fn a_connection_silent_past_the_idle_timeout_is_closed() {
    let supd = Supd::new();
    start_with_env(&supd, &[("SUPD_CONTROL_IDLE_TIMEOUT", "1s")]);
    let started = std::time::Instant::now();
    let mut silent = connect(&supd);
    let mut stalled = connect(&supd);
    stalled.write_all(&[0, 0, 1, 0, b'{']).unwrap();
    for s in [&mut silent, &mut stalled] {
        let message = read_last_words(s);
        assert!(
            message.contains("no complete request within 1s"),
            "{message}"
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A connection in use is not cut: an answer resets the clock.
    let mut busy = connect(&supd);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(600));
        busy.write_all(&frame(br#"{"cmd":"ping"}"#)).unwrap();
        assert_eq!(read_reply(&mut busy)["type"], "pong");
    }
}

/// SIGCONTs a SIGSTOPped daemon when dropped, so a failing test cleans up.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0 as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    }
}

#[test]
fn supctl_gives_up_on_a_stopped_daemon_with_one_line() {
    let supd = Supd::new();
    supd.ok(&["ping"]);
    let pid = supd.daemon_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let resume = Resume(pid);
    wait_for(Duration::from_secs(10), "the daemon stopped", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit_once(')')?.1.trim_start().chars().next();
        (state == Some('T')).then_some(())
    });
    for (args, env) in [
        (&["--timeout", "1", "list"][..], None),
        (&["ping"], Some("1s")),
    ] {
        let mut cmd = supd.cmd(args);
        if let Some(timeout) = env {
            cmd.env("SUPCTL_TIMEOUT", timeout);
        }
        let started = std::time::Instant::now();
        let out = supd.output(cmd, args);
        let took = started.elapsed();
        assert!(
            !out.status.success(),
            "{args:?} answered: {} {:?}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("supd (pid {pid})"))
                && stderr.contains("did not answer within 1s")
                && stderr.contains(&format!("kill -CONT {pid}")),
            "{stderr}"
        );
    }
    drop(resume);
    assert!(supd.ok(&["--timeout", "1", "ping"]).starts_with("pong"));
}

#[test]
fn a_long_operation_outlasts_the_reply_timeout() {
    let supd = Supd::new();
    let release = supd.start_lingering("slow");
    // The app takes 3 s to stop, three times the timeout: the daemon's
    // `working` frames keep supctl waiting.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        drop(release);
    });
    let started = std::time::Instant::now();
    supd.ok(&["--timeout", "1", "stop", "slow"]);
    assert!(started.elapsed() >= Duration::from_secs(3));
    releaser.join().unwrap();
}

#[test]
fn a_client_of_another_uid_hears_why_it_is_refused() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs root to run supctl as another uid");
        return;
    }
    let supd = Supd::new();
    supd.ok(&["ping"]);
    let set = |p: std::path::PathBuf, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Let uid 65534 reach the socket, so the daemon's own check decides.
    set(supd.home().parent().unwrap().to_path_buf(), 0o711);
    set(supd.home(), 0o711);
    set(supd.home().join("supd.sock"), 0o666);
    let mut cmd = supd.cmd(&["ping"]);
    cmd.current_dir("/");
    // SAFETY: setuid is a plain system call, fine between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setgid(nix::unistd::Gid::from_raw(65534))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).map_err(std::io::Error::from)
        });
    }
    let out = supd.output(cmd, &["ping"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: refused: uid 65534 is neither the daemon's (0) nor root"
    );
    set(supd.home(), 0o700);
}

#[test]
fn a_port_another_daemon_serves_is_not_shared() {
    let port = crate::support::free_port().to_string();
    let first = Supd::new();
    let second = Supd::new();
    let start = [
        "start", "sleep", "--name", "web", "--port", &port, "--", "1000",
    ];
    first.ok(&start);
    let err = second.fails(&start);
    assert!(
        err.contains(&format!("port {port} is already in use by another process")),
        "{err}"
    );
    assert_eq!(first.instance("web", 0)["status"], "online");
    assert!(second.list().iter().all(|p| p["status"] != "online"));
}
