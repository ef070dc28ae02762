//! `supctl update`: the daemon replaces itself with the installed binary and
//! no app notices — same pids, no failed request, no lost or doubled log line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    KillOnDrop, Load, Supd, bin, fifo_reader, free_port, open_files_limit, wait_for,
};

/// Installs a copy of this build's supd at `path` the way package managers
/// do: written beside it, then renamed over it (a new file; the running
/// binary is never written to).
fn install(binary: &Path, path: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(binary, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The soft open-files limit the test daemons start with.
const STARTED_WITH: u64 = 1000;

/// Starts a daemon from a copy of supd in the test's own folder, so the test
/// can replace that binary; returns the copy's path and the daemon.
fn daemon_from_a_copy(supd: &Supd) -> (PathBuf, KillOnDrop) {
    let dir = supd.work().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("supd");
    install(&bin("supd"), &binary);
    let mut daemon = std::process::Command::new(&binary);
    daemon
        .env("SUPD_HOME", supd.home())
        .stderr(std::fs::File::create(supd.work().join("daemon.err")).unwrap());
    // Started under a soft open-files limit of its own, which its children
    // must get back, before and after an update.
    // SAFETY: setrlimit is a plain system call, fine between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        daemon.pre_exec(|| {
            use nix::sys::resource::{Resource, getrlimit, setrlimit};
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
            setrlimit(Resource::RLIMIT_NOFILE, STARTED_WITH.min(hard), hard)
                .map_err(std::io::Error::from)
        });
    }
    let daemon = daemon.spawn().unwrap();
    supd.wait_for_socket();
    (binary, KillOnDrop(daemon))
}

fn ping(supd: &Supd) -> Value {
    serde_json::from_str(&supd.ok(&["ping", "--json"])).unwrap()
}

/// Every instance's pid, by app and slot.
fn pids(supd: &Supd) -> Vec<(String, u64, u64)> {
    let mut pids: Vec<_> = supd
        .list()
        .iter()
        .filter(|p| p["status"] == "online")
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_string();
            (
                name,
                p["instance"].as_u64().unwrap(),
                p["pid"].as_u64().unwrap(),
            )
        })
        .collect();
    pids.sort();
    pids
}

#[test]
fn update_under_load_keeps_every_pid_fails_no_request_and_loses_no_line() {
    let supd = Supd::new();
    let (binary, _daemon) = daemon_from_a_copy(&supd);
    let port = free_port();
    let ticker = supd.script(
        "tick.sh",
        "i=0; while :; do echo \"tick $i\"; i=$((i+1)); sleep 0.005; done",
    );
    let flappy = supd.script("flappy.sh", "sleep 0.05; exit 1");
    let file = supd.write(
        "eco.toml",
        &format!(
            "[[apps]]\nname = \"users\"\nscript = \"{users}\"\nexec_mode = \"cluster\"\ninstances = 2\nport = {port}\nwait_ready = true\nlisten_timeout = \"10s\"\n\n\
             [[apps]]\nname = \"tick\"\nscript = \"{ticker}\"\n\n\
             [[apps]]\nname = \"flappy\"\nscript = \"{flappy}\"\nmax_restarts = 100000\nrestart_delay = 0\n",
            users = bin("user-service").display(),
            ticker = ticker.display(),
            flappy = flappy.display(),
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let before = ping(&supd);
    let serving = pids(&supd)
        .into_iter()
        .filter(|(name, _, _)| name != "flappy")
        .collect::<Vec<_>>();
    assert_eq!(serving.len(), 3, "{serving:?}");

    let load = Load::start(port, "/health", 4);
    install(&bin("supd"), &binary);
    let out = supd.ok(&["update"]);
    assert!(out.contains("updated in place"), "{out}");

    let after = ping(&supd);
    assert_eq!(after["pid"], before["pid"], "the daemon kept its pid");
    assert_ne!(after["image_started_ms"], before["image_started_ms"]);
    assert!(
        after["origin"]
            .as_str()
            .unwrap()
            .starts_with("updated from"),
        "{after}"
    );
    let kept: Vec<_> = pids(&supd)
        .into_iter()
        .filter(|(name, _, _)| name != "flappy")
        .collect();
    assert_eq!(kept, serving, "every app kept its pid");

    // The new image supervises: the crash-looping app goes on being
    // restarted, and a reload under the same load replaces the cluster.
    let restarts = |supd: &Supd| {
        supd.instance("flappy", 0)["restarts"]
            .as_u64()
            .unwrap_or_default()
    };
    let seen = restarts(&supd);
    wait_for(Duration::from_secs(20), "flappy restarted again", || {
        (restarts(&supd) > seen + 3).then_some(())
    });
    supd.ok(&["reload", "users"]);
    let reloaded: Vec<_> = pids(&supd)
        .into_iter()
        .filter(|(name, _, _)| name == "users")
        .collect();
    assert!(
        reloaded.iter().all(|p| !serving.contains(p)),
        "reload after update replaced both: {reloaded:?}"
    );
    for (_, _, pid) in &reloaded {
        assert_eq!(open_files_limit(*pid as u32), STARTED_WITH);
    }
    load.finish_without_failures(50);

    // The ticker's lines crossed the update whole, once each, in order.
    let log = supd.home().join("logs/tick-out.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let numbers: Vec<u64> = text
        .lines()
        .map(|l| l.strip_prefix("tick ").expect(l).parse().expect(l))
        .collect();
    assert!(numbers.len() > 10, "{numbers:?}");
    for (i, n) in numbers.iter().enumerate() {
        assert_eq!(*n, i as u64, "line {i} of the ticker");
    }
    supd.ok(&["kill"]);
}

#[test]
fn a_binary_that_cannot_take_over_is_refused_and_nothing_changes() {
    let supd = Supd::new();
    let (binary, _daemon) = daemon_from_a_copy(&supd);
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    let before = ping(&supd);
    let nap = pids(&supd);

    // A broken build: it runs, but cannot read the handover.
    std::fs::write(
        supd.work().join("broken"),
        "#!/bin/sh\necho 'broken build: cannot start' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(
        supd.work().join("broken"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::rename(supd.work().join("broken"), &binary).unwrap();
    let err = supd.fails(&["update"]);
    assert!(
        err.contains("update refused, nothing changed")
            && err.contains("broken build: cannot start")
            && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(ping(&supd)["image_started_ms"], before["image_started_ms"]);
    assert_eq!(pids(&supd), nap);

    // Once a good binary is installed, the update goes through.
    install(&bin("supd"), &binary);
    supd.ok(&["update"]);
    assert_eq!(pids(&supd), nap);
    assert_eq!(ping(&supd)["pid"], before["pid"]);
    supd.ok(&["kill"]);
}

/// The daemon thread named `log-<app>`, if it waits in `pipe_write`.
fn log_thread_blocked(daemon: u32, app: &str) -> Option<()> {
    let tasks = std::fs::read_dir(format!("/proc/{daemon}/task")).ok()?;
    tasks.flatten().find_map(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        let wchan = std::fs::read_to_string(task.path().join("wchan")).ok()?;
        (comm.trim() == format!("log-{app}") && wchan.contains("pipe_write")).then_some(())
    })
}

#[test]
fn a_readiness_notice_sent_during_the_handover_reaches_the_next_image() {
    use std::io::{BufRead, Read};
    use std::os::linux::net::SocketAddrExt;
    let supd = Supd::new();
    let (binary, _daemon) = daemon_from_a_copy(&supd);
    // "late": its first process says READY=1 at once and exits when told;
    // the one started after it waits for the test to say READY=1 for it.
    let (once, crash) = (supd.work().join("once"), supd.work().join("crash"));
    let late = supd.write(
        "late.py",
        &format!(
            "import os, socket, sys, time\n\
             if not os.path.exists({once:?}):\n    open({once:?}, 'w').close()\n    \
             a = os.environ['NOTIFY_SOCKET']\n    \
             socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', '\\0' + a[1:])\n    \
             while not os.path.exists({crash:?}):\n        time.sleep(0.01)\n    sys.exit(1)\n\
             time.sleep(600)\n"
        ),
    );
    // "disk": its log "file" is a FIFO nobody reads yet, so its log thread
    // blocks writing, and so does its freeze: the update stands still with
    // "late" (registered first) already frozen.
    let mut reader = fifo_reader(&supd.log_fifo("disk"));
    let flood = supd.write(
        "flood.py",
        "import sys, time\nsys.stdout.write(('y' * 99 + '\\n') * 30_001)\nsys.stdout.flush()\ntime.sleep(600)\n",
    );
    let eco = |name: &str, body: String| supd.write(name, &body);
    let late_file = eco(
        "late.toml",
        format!(
            "[[apps]]\nname = \"late\"\nscript = \"python3\"\nargs = [\"{}\"]\nwait_ready = true\nlisten_timeout = \"60s\"\nrestart_delay = 0\n",
            late.display()
        ),
    );
    let disk_file = eco(
        "disk.toml",
        format!(
            "[[apps]]\nname = \"disk\"\nscript = \"python3\"\nargs = [\"{}\"]\n",
            flood.display()
        ),
    );
    supd.ok(&["start", late_file.to_str().unwrap()]);
    supd.ok(&["start", disk_file.to_str().unwrap()]);
    let daemon = supd.daemon_pid().unwrap();
    wait_for(
        Duration::from_secs(20),
        "the disk app's log thread blocked",
        || log_thread_blocked(daemon, "disk"),
    );

    // "late" crashes and is restarted: its new process is launching.
    let first = supd.instance("late", 0)["pid"].as_u64().unwrap();
    std::fs::write(&crash, "").unwrap();
    let launching = supd.wait_instance("late", 0, "late restarted, launching", |p| {
        p["status"] == "launching" && p["pid"].as_u64().is_some_and(|pid| pid != first)
    });
    let pid = launching["pid"].as_u64().unwrap();

    install(&bin("supd"), &binary);
    let mut update = supd
        .cmd(&["update"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(update.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("checked") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "update ended early");
    }
    // The update is on its way (and will wait for "disk"): READY=1 now.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let address = environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"NOTIFY_SOCKET=@"))
        .expect("the process has an abstract NOTIFY_SOCKET");
    let address = std::os::unix::net::SocketAddr::from_abstract_name(address).unwrap();
    std::os::unix::net::UnixDatagram::unbound()
        .unwrap()
        .send_to_addr(b"READY=1", &address)
        .unwrap();

    // The disk takes the lines again; the update goes through.
    let drained = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while total < 3_000_100 && std::time::Instant::now() < deadline {
            match reader.read(&mut buf) {
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
        total
    });
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(update.wait().unwrap().success());
    assert!(rest.contains("updated in place"), "{rest}");
    assert_eq!(
        drained.join().unwrap(),
        3_000_100,
        "every line of the disk app"
    );

    // The next image read the notice: online, not restarted again.
    let online = supd.wait_instance("late", 0, "late online", |p| p["status"] == "online");
    assert_eq!(online["pid"].as_u64(), Some(pid));
    assert_eq!(online["restarts"], 1);
    supd.ok(&["kill"]);
}

#[test]
fn an_app_waiting_to_restart_at_an_update_is_restarted_by_the_next_image() {
    let supd = Supd::new();
    let (binary, _daemon) = daemon_from_a_copy(&supd);
    let crashy = supd.script("crashy.sh", "exit 1");
    let file = supd.write(
        "eco.toml",
        &format!(
            "[[apps]]\nname = \"crashy\"\nscript = \"{}\"\nrestart_delay = \"5s\"\n",
            crashy.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    supd.wait_instance("crashy", 0, "crashy waiting to restart", |p| {
        p["status"] == "waiting-restart"
    });
    install(&bin("supd"), &binary);
    supd.ok(&["update"]);
    let handed_over = supd.instance("crashy", 0);
    assert_eq!(handed_over["status"], "waiting-restart", "{handed_over}");
    assert_eq!(handed_over["restarts"], 0, "restarted before the update");
    // Its restart delay is counted again from the takeover.
    supd.wait_instance("crashy", 0, "crashy restarted by the next image", |p| {
        p["restarts"].as_u64() >= Some(1)
    });
    supd.ok(&["kill"]);
}
