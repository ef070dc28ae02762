//! Operations: save and resurrect, the daemon's own log.

use std::time::Duration;

use crate::support::{KillOnDrop, Supd, bin, wait_for};

#[test]
fn save_and_resurrect_bring_back_scaled_and_stopped_apps() {
    let supd = Supd::new();
    let file = supd.write(
        "eco.toml",
        "[[apps]]\nname = \"web\"\nscript = \"sleep\"\nargs = [\"300\"]\ninstances = 2\n[apps.env]\nFLAVOUR = \"saved\"\n\n[[apps]]\nname = \"idle\"\nscript = \"sleep\"\nargs = [\"300\"]\n",
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    supd.ok(&["scale", "web", "3"]);
    supd.ok(&["stop", "idle"]);
    let out = supd.ok(&["save"]);
    assert!(
        out.contains("saved 2 app(s)") && out.contains("dump.json"),
        "{out}"
    );
    supd.ok(&["kill"]);

    // A new daemon (started by the next command) knows nothing until resurrect.
    assert!(supd.list().is_empty());
    let out = supd.ok(&["resurrect"]);
    assert!(
        out.contains("started web") && out.contains("restored idle (stopped)"),
        "{out}"
    );
    let rows = supd.list();
    let web: Vec<_> = rows.iter().filter(|r| r["name"] == "web").collect();
    assert_eq!(web.len(), 3, "the scaled count came back: {rows:?}");
    assert!(web.iter().all(|r| r["status"] == "online"));
    let idle: Vec<_> = rows.iter().filter(|r| r["name"] == "idle").collect();
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0]["status"], "stopped");
    assert_eq!(supd.show("web")["config"]["env"]["FLAVOUR"], "saved");
    // Resurrecting again leaves running apps alone.
    assert!(supd.ok(&["resurrect"]).contains("web is already online"));

    // A second save keeps the first as a backup.
    supd.ok(&["save"]);
    assert!(supd.home().join("dump.json.bak").exists());
}

#[test]
fn a_corrupt_dump_is_refused_and_nothing_starts() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    supd.ok(&["save"]);
    supd.ok(&["kill"]);
    let dump = supd.home().join("dump.json");
    let full = std::fs::read(&dump).unwrap();
    std::fs::write(&dump, &full[..full.len() / 2]).unwrap();
    let err = supd.fails(&["resurrect"]);
    assert!(
        err.contains("dump.json")
            && err.contains("corrupt or truncated")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(supd.list().is_empty(), "nothing half-applied");
    std::fs::write(
        &dump,
        b"{\"version\": 1, \"saved_at_ms\": 0, \"apps\": [{\"config\": {\"name\": \"x\"}}]}",
    )
    .unwrap();
    assert!(supd.fails(&["resurrect"]).contains("corrupt"));
    std::fs::remove_file(&dump).unwrap();
    assert!(supd.fails(&["resurrect"]).contains("supctl save"));
}

#[test]
fn supd_resurrect_flag_restores_at_start() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    supd.ok(&["save"]);
    supd.ok(&["kill"]);
    let _daemon = supd.spawn_daemon(&bin("supd"), &["--resurrect"]);
    wait_for(Duration::from_secs(20), "nap resurrected", || {
        let out = supd.run(&["list", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
        rows.iter()
            .any(|r| r["name"] == "nap" && r["status"] == "online")
            .then_some(())
    });
    supd.ok(&["kill"]);
}

#[test]
fn startup_prints_a_notify_unit_that_resurrects() {
    let supd = Supd::new();
    let unit = supd.ok(&["startup"]);
    let mut section = String::new();
    let mut keys = std::collections::HashMap::new();
    for line in unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        keys.insert(format!("{section}{k}"), v.to_string());
    }
    assert_eq!(keys["[Service]Type"], "notify");
    assert_eq!(keys["[Service]KillMode"], "mixed");
    assert!(
        keys["[Service]ExecStart"].ends_with("/supd --resurrect"),
        "{unit}"
    );
    assert!(
        std::path::Path::new(keys["[Service]ExecStart"].trim_end_matches(" --resurrect")).exists()
    );
    assert_eq!(
        keys["[Service]Environment"],
        format!("SUPD_HOME={}", supd.home().display())
    );
    assert_eq!(keys["[Install]WantedBy"], "multi-user.target");
    // Where systemd is installed, let it check the unit too.
    if let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        && out.status.success()
    {
        let path = supd.write("supd-test.service", &unit);
        let verify = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let errors = String::from_utf8_lossy(&verify.stderr);
        assert!(
            !errors.contains("supd-test.service:"),
            "systemd-analyze verify: {errors}"
        );
    }
}

#[test]
fn the_daemon_tells_systemd_ready_and_stopping() {
    let supd = Supd::new();
    std::fs::create_dir_all(supd.home()).unwrap();
    let path = supd.work().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let daemon = std::process::Command::new(bin("supd"))
        .env("SUPD_HOME", supd.home())
        .env("NOTIFY_SOCKET", &path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    let _daemon = KillOnDrop(daemon);
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).expect("READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means the socket answers.
    assert!(supd.ok(&["ping"]).contains(&pid.to_string()));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

#[test]
fn supd_log_is_rotated_at_its_size_keeping_one_old_file() {
    use std::os::unix::fs::MetadataExt;
    let supd = Supd::new();
    supd.start_with(|cmd| {
        cmd.env("SUPD_LOG_MAX_SIZE", "16K");
    });
    // A crash loop: each crash writes lines to the daemon's log.
    let eco = supd.write(
        "loop.toml",
        "[[apps]]\nname = \"loop\"\nscript = \"sh\"\nargs = [\"-c\", \"exit 1\"]\nmax_restarts = 100000\nrestart_delay = 0\n",
    );
    supd.ok(&["start", eco.to_str().unwrap()]);
    let (log, old) = (supd.home().join("supd.log"), supd.home().join("supd.log.1"));
    let limit = 16 * 1024;
    let first = wait_for(Duration::from_secs(30), "a first rotation", || {
        std::fs::metadata(&old).ok()
    });
    // Rotated once past the size, after a whole line.
    assert!(
        first.len() >= limit && first.len() < limit + 1024,
        "{}",
        first.len()
    );
    let text = std::fs::read_to_string(&old).unwrap();
    assert!(text.ends_with('\n') && text.contains("exited"), "{text}");
    // Then again: the old file is replaced, never a third one kept.
    let second = wait_for(Duration::from_secs(30), "a second rotation", || {
        std::fs::metadata(&old)
            .ok()
            .filter(|m| m.ino() != first.ino())
    });
    assert!(second.len() >= limit && second.len() < limit + 1024);
    assert!(std::fs::metadata(&log).unwrap().len() < limit + 1024);
    let logs: Vec<_> = std::fs::read_dir(supd.home())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("supd.log"))
        .collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
    // The daemon goes on writing to the new file.
    wait_for(Duration::from_secs(10), "lines in the new supd.log", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("exited"))
    });
    supd.ok(&["kill"]);
}

#[test]
fn a_bad_supd_log_max_size_is_refused_at_start() {
    let supd = Supd::new();
    let mut ping = supd.cmd(&["ping"]);
    ping.env("SUPD_LOG_MAX_SIZE", "huge");
    let out = supd.output(ping, &["ping"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SUPD_LOG_MAX_SIZE=\"huge\""), "{err}");
}
