//! A port nobody serves: an instance that holds the socket and never
//! accepts, a slot whose process is errored or stopped, and a wrapper
//! (`npm start`) in front of the server. Clients are reset or served, never
//! left hanging; `list` and `show` say what is wrong.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Supd, bin, free_port, get_fresh, wait_for};

/// Longer than any reset should take (a window of 3 s and a sample a
/// second): a client still waiting then is hanging.
const PATIENCE: Duration = Duration::from_secs(10);

/// What one client saw.
#[derive(Debug, PartialEq)]
enum Seen {
    /// An HTTP status line.
    Answered(u16),
    /// A reset (or a close without an answer): it fails at once.
    Dropped,
    /// Refused at connect.
    Refused,
    /// Nothing within [`PATIENCE`].
    Hung,
}

/// Connects to 127.0.0.1:`port`, sends a GET and waits for what comes.
fn request(port: u16) -> (Seen, Duration) {
    let start = Instant::now();
    let seen = match TcpStream::connect(("127.0.0.1", port)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Seen::Refused,
        Err(e) => panic!("connect to {port}: {e}"),
        Ok(mut stream) => {
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            // A reset may come before the request is written.
            let _ =
                stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            match stream.read_to_string(&mut answer) {
                Ok(0) => Seen::Dropped,
                Ok(_) => Seen::Answered(
                    answer
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                ),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Seen::Hung
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => Seen::Dropped,
                Err(e) => panic!("read from {port}: {e}"),
            }
        }
    };
    (seen, start.elapsed())
}

/// `count` clients at once; what each saw.
fn requests(port: u16, count: usize) -> Vec<(Seen, Duration)> {
    let clients: Vec<_> = (0..count)
        .map(|_| std::thread::spawn(move || request(port)))
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

/// An executable script: instance `never` (or every instance, if `None`)
/// holds fd 3 and never accepts; the others run user-service on it.
fn half_served(supd: &Supd, never: Option<u32>) -> std::path::PathBuf {
    let test = never.map_or(String::new(), |n| format!("[ \"$INSTANCE_ID\" = {n} ] && "));
    supd.script(
        "half.sh",
        &format!(
            "{test}exec sleep 1000\nexec {}",
            bin("user-service").display()
        ),
    )
}

/// Starts `script` as a cluster app `name` of `instances` on `port`.
fn start_cluster(supd: &Supd, name: &str, script: &std::path::Path, port: u16, instances: u32) {
    supd.start_script(
        name,
        script,
        &format!(
            "exec_mode = \"cluster\"\ninstances = {instances}\nport = {port}\nmax_restarts = 1\nmin_uptime = \"5s\"\n"
        ),
    );
}

/// An instance that holds the socket and never accepts: its client is
/// reset within a few seconds instead of hanging; `list` and `show` say
/// why, with the hint.
#[test]
fn clients_of_an_instance_that_never_accepts_are_reset_and_it_is_reported() {
    let supd = Supd::new();
    let port = free_port();
    start_cluster(&supd, "mute", &half_served(&supd, None), port, 1);
    let (seen, after) = request(port);
    assert_eq!(seen, Seen::Dropped, "after {after:?}");
    assert!(after < Duration::from_secs(8), "reset after {after:?}");

    let row = supd.instance("mute", 0);
    assert_eq!(row["status"], "online", "{row}");
    let problem = row["problem"].as_str().expect("a problem is reported");
    assert!(problem.contains(&format!("port {port}")), "{problem}");
    let table = supd.ok(&["list"]);
    assert!(table.contains("unserved"), "{table}");
    let show = supd.ok(&["show", "mute"]);
    assert!(
        show.contains("instance 0: not serving: nothing accepts"),
        "{show}"
    );
    assert!(
        show.contains("hint: the program must accept connections on the socket it gets as fd 3"),
        "{show}"
    );
    assert_eq!(supd.show("mute")["instances"][0]["problem"], problem);
}

/// Instance 1 never accepts, instance 0 serves: instance 1 is reported,
/// the clients it held are reset, and new connections all go to instance 0.
#[test]
fn a_slot_nobody_serves_is_steered_away_from() {
    let supd = Supd::new();
    let port = free_port();
    start_cluster(&supd, "half", &half_served(&supd, Some(1)), port, 2);
    wait_for(Duration::from_secs(10), "instance 0 to answer", || {
        get_fresh(port, "/health").ok()
    });
    // Some of these are queued on instance 1, which never takes them.
    let first = requests(port, 12);
    for (seen, after) in &first {
        assert!(
            matches!(seen, Seen::Answered(200) | Seen::Dropped) && *after < Duration::from_secs(8),
            "nobody is left hanging: {first:?}"
        );
    }
    let row = supd.wait_instance("half", 1, "instance 1 reported", |p| {
        p["problem"].is_string()
    });
    assert_eq!(row["status"], "online");
    assert!(supd.instance("half", 0)["problem"].is_null());
    // From now on, every client is served, by instance 0.
    for _ in 0..40 {
        let (status, body) = get_fresh(port, "/health").expect("served, not reset or hung");
        assert_eq!(status, 200);
        assert!(body.contains("instance-0"), "{body}");
    }
}

/// A slow server whose queue stays the same length while it works through
/// it (each client reconnects as soon as it is answered) is not reported,
/// and every client is answered.
#[test]
fn a_slow_server_with_a_steady_queue_is_not_reported() {
    let supd = Supd::new();
    let port = free_port();
    let server = supd.write(
        "slow.py",
        "import socket, time\n\
         s = socket.socket(fileno=3)\n\
         while True:\n\
         \x20   c, _ = s.accept()\n\
         \x20   c.recv(1024)\n\
         \x20   time.sleep(0.25)\n\
         \x20   c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok')\n\
         \x20   c.close()\n",
    );
    let script = supd.script("slow.sh", &format!("exec python3 {}", server.display()));
    start_cluster(&supd, "slow", &script, port, 1);
    let until = Instant::now() + Duration::from_secs(7);
    let clients: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while Instant::now() < until {
                    seen.push(request(port));
                }
                seen
            })
        })
        .collect();
    let seen: Vec<(Seen, Duration)> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(seen.len() >= 20, "the load ran: {seen:?}");
    assert!(
        seen.iter().all(|(s, _)| *s == Seen::Answered(200)),
        "every client answered: {seen:?}\n{}",
        std::fs::read_to_string(supd.home().join("supd.log")).unwrap_or_default()
    );
    assert!(supd.instance("slow", 0)["problem"].is_null());
}

/// An errored instance beside one that serves: clients go to the one that
/// serves. An app whose only instance is errored resets its clients.
#[test]
fn clients_of_an_errored_slot_are_reset_or_served_elsewhere() {
    let supd = Supd::new();
    let port = free_port();
    let script = supd.script(
        "crash.sh",
        &format!(
            "[ \"$INSTANCE_ID\" = 1 ] && exit 1\nexec {}",
            bin("user-service").display()
        ),
    );
    start_cluster(&supd, "half", &script, port, 2);
    supd.wait_instance("half", 1, "instance 1 errored", |p| {
        p["status"] == "errored"
    });
    let all = requests(port, 16);
    for (seen, after) in &all {
        assert!(
            *seen == Seen::Answered(200)
                || (*seen == Seen::Dropped && *after < Duration::from_secs(3)),
            "served, or reset at once (a client queued before the steering): {all:?}"
        );
    }
    for _ in 0..40 {
        let (status, _) = get_fresh(port, "/health").expect("served by instance 0");
        assert_eq!(status, 200);
    }

    let alone = free_port();
    let crash = supd.script("exit.sh", "exit 1");
    start_cluster(&supd, "broken", &crash, alone, 1);
    supd.wait_instance("broken", 0, "errored", |p| p["status"] == "errored");
    let (seen, after) = request(alone);
    assert_eq!(seen, Seen::Dropped, "after {after:?}");
    assert!(after < Duration::from_secs(3), "reset after {after:?}");
}

/// A stopped app's port resets its clients (the daemon still holds it for
/// the next start), and serves again once started.
#[test]
fn clients_of_a_stopped_app_are_reset_and_served_after_a_start() {
    let supd = Supd::new();
    let port = free_port();
    let script = supd.script(
        "serve.sh",
        &format!("exec {}", bin("user-service").display()),
    );
    start_cluster(&supd, "users", &script, port, 1);
    wait_for(Duration::from_secs(10), "an answer", || {
        get_fresh(port, "/health").ok()
    });
    supd.ok(&["stop", "users"]);
    let (seen, after) = request(port);
    assert_eq!(seen, Seen::Dropped, "after {after:?}");
    assert!(after < Duration::from_secs(3), "reset after {after:?}");
    assert!(supd.instance("users", 0)["problem"].is_null());

    supd.ok(&["start", "users.toml"]);
    let (status, _) = wait_for(Duration::from_secs(10), "an answer again", || {
        get_fresh(port, "/health").ok()
    });
    assert_eq!(status, 200);
}

/// `start` warns about an app whose program is npm in front of the server,
/// names what to write instead, and starts it anyway.
#[test]
fn start_warns_about_npm_in_front_of_a_port() {
    let supd = Supd::new();
    let port = free_port();
    supd.npm_project();
    let file = supd.write(
        "web.toml",
        &format!(
            "[[apps]]\nname = \"web\"\nscript = \"npm\"\nargs = [\"start\"]\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\n[apps.env]\nNO_UPDATE_NOTIFIER = \"1\"\n"
        ),
    );
    let out = supd.run(&["start", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: app \"web\": npm runs the server as a child process, which does not get the port's socket (LISTEN_PID is npm's pid); name the program that listens, not npm: e.g. script = \"node\", args = [\"server.js\"] (what the npm script runs)"
        ],
        "{stderr}"
    );
    assert_eq!(supd.list().iter().filter(|p| p["name"] == "web").count(), 2);
}
