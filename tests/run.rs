//! `supd run FILE`: supd as a container's entry point — in the foreground,
//! the apps' lines on its stdout, PID 1 of a fresh pid namespace reaping
//! every orphan, SIGTERM stopping every app gracefully, and an exit by itself
//! (non-zero) when every app ended errored.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{KillOnDrop, Supd, bin, fixture, free_port, get_fresh, wait_for};

/// What a child printed on one stream so far, read by a thread.
#[derive(Clone, Default)]
struct Printed(Arc<Mutex<String>>);

impl Printed {
    fn read_from(stream: impl Read + Send + 'static) -> Printed {
        let printed = Printed::default();
        let text = printed.0.clone();
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        printed
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Waits until a printed line contains `needle`.
    fn wait_line(&self, needle: &str) {
        wait_for(Duration::from_secs(15), needle, || {
            self.text()
                .lines()
                .any(|l| l.contains(needle))
                .then_some(())
        });
    }
}

/// `supd run` (behind `prefix`, e.g. `unshare …`) on `file`, its output
/// read by threads.
fn run(supd: &Supd, prefix: &[&str], file: &str, extra: &[&str]) -> (KillOnDrop, Printed, Printed) {
    let supd_bin = bin("supd");
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(&supd_bin);
            cmd
        }
        None => Command::new(&supd_bin),
    };
    let mut child = cmd
        .arg("run")
        .arg(supd.work().join(file))
        .args(extra)
        .env("SUPD_HOME", supd.home())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("supd run");
    let out = Printed::read_from(child.stdout.take().unwrap());
    let err = Printed::read_from(child.stderr.take().unwrap());
    (KillOnDrop(child), out, err)
}

/// Waits (bounded) for `child` to exit.
fn exit_of(child: &mut Child) -> ExitStatus {
    wait_for(Duration::from_secs(30), "supd run to exit", || {
        child.try_wait().unwrap()
    })
}

/// The children of `pid` (every thread's), with their state letter and
/// command line.
fn children(pid: u32) -> Vec<(u32, char, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{child}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            Some((child, state, cmdline.trim().to_string()))
        })
        .collect()
}

/// As PID 1 of a new pid namespace, supd reaps the orphans an app leaves
/// (each exits 0.3 s after its parent abandoned it); a cluster app serves
/// and reloads there as anywhere; SIGTERM then stops the apps gracefully
/// (the trap prints `bye`) and supd exits 0.
#[test]
fn as_pid_1_supd_reaps_every_orphan_and_sigterm_stops_the_apps_gracefully() {
    let supd = Supd::new();
    let orphans = supd.work().join("orphans");
    let port = free_port();
    supd.write(
        "eco.toml",
        &format!(
            r#"
[[apps]]
name = "leaver"
script = "sh"
args = ["-c", """
trap 'echo bye; exit 0' INT
for i in 1 2 3; do (sh -c 'echo $$ >> {orphans}; exec sleep 0.3' &); done
echo started
while :; do sleep 0.05; done
"""]
kill_timeout = "10s"

[[apps]]
name = "web"
script = "{web}"
exec_mode = "cluster"
instances = 2
port = {port}
"#,
            orphans = orphans.display(),
            web = fixture("unmodified.js").display(),
        ),
    );
    let (mut unshare, out, err) = run(
        &supd,
        &["unshare", "--pid", "--fork", "--mount-proc"],
        "eco.toml",
        &[],
    );
    out.wait_line("leaver:0 | started");
    // supd is the child `unshare --fork` made: PID 1 of the new namespace.
    let supd_pid = wait_for(Duration::from_secs(10), "supd under unshare", || {
        children(unshare.0.id()).first().map(|c| c.0)
    });
    let status = std::fs::read_to_string(format!("/proc/{supd_pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.ends_with("\t1"),
        "supd is not PID 1 of its namespace: {nspid}"
    );
    wait_for(Duration::from_secs(10), "the three orphans to run", || {
        let pids = std::fs::read_to_string(&orphans).unwrap_or_default();
        (pids.lines().count() == 3).then_some(())
    });
    // Each orphan, once it exits, is a zombie until its new parent reaps it:
    // the apps' main processes must end up supd's only children.
    let is_orphan = |c: &(u32, char, String)| c.1 == 'Z' || c.2.starts_with("sleep");
    wait_for(
        Duration::from_secs(10),
        "supd's children to be the apps' (the orphans reaped)",
        || {
            let children = children(supd_pid);
            (children.len() == 3 && !children.iter().any(is_orphan)).then_some(())
        },
    );
    // supctl works beside `supd run`, and a cluster app reloads as anywhere.
    supd.ok(&["reload", "web"]);
    let (status, _) = get_fresh(port, "/").expect("web answers after its reload");
    assert_eq!(status, 200);
    let apps: Vec<u32> = children(supd_pid).iter().map(|c| c.0).collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supd_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = exit_of(&mut unshare.0);
    assert!(exit.success(), "{exit:?}; stderr:\n{}", err.text());
    assert!(
        out.text().contains("leaver:0 | bye"),
        "the app was not stopped gracefully:\n{}",
        out.text()
    );
    for app in apps {
        assert!(!crate::support::exists(app), "an app outlived supd run");
    }
}

/// Without PID 1: every app's line on stdout (as JSON with `--json`), and
/// a run whose apps have all ended, one of them errored (it crashed until
/// `max_restarts`), ends by itself with a failure.
#[test]
fn supd_run_prints_json_lines_and_ends_failing_when_the_apps_ended_errored() {
    let supd = Supd::new();
    supd.write(
        "eco.toml",
        r#"
[[apps]]
name = "speaker"
script = "sh"
args = ["-c", "echo one; echo two >&2; exec sleep 1000"]

[[apps]]
name = "crasher"
script = "sh"
args = ["-c", "exit 3"]
max_restarts = 1
restart_delay = "0ms"
"#,
    );
    let (mut daemon, out, err) = run(&supd, &[], "eco.toml", &["--json"]);
    out.wait_line(r#""line":"one""#);
    err.wait_line(r#""line":"two""#);
    let line = out.text().lines().next().unwrap().to_string();
    let object: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(object["app"], "speaker");
    assert_eq!(object["instance"], 0);
    assert_eq!(object["stream"], "out");
    supd.wait_instance("crasher", 0, "crasher errored", |i| {
        i["status"] == "errored"
    });
    supd.ok(&["stop", "speaker"]);
    let exit = exit_of(&mut daemon.0);
    assert_eq!(exit.code(), Some(1), "stderr:\n{}", err.text());
}

/// A file that cannot be read is a one-line error naming it, and nothing
/// starts (no daemon socket).
#[test]
fn supd_run_of_a_bad_file_names_it_and_starts_nothing() {
    let supd = Supd::new();
    supd.write("bad.toml", "[[apps]]\nname = \"x\"\nscript = 3\n");
    let out = Command::new(bin("supd"))
        .arg("run")
        .arg(supd.work().join("bad.toml"))
        .env("SUPD_HOME", supd.home())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("bad.toml:3") && stderr.contains("script"),
        "{stderr}"
    );
    assert!(!supd.home().join("supd.sock").exists());
}

/// `--only` starts only the apps named, and `--env NAME` applies their
/// `env_NAME` over `env`, as `supctl start FILE` does.
#[test]
fn supd_run_starts_only_the_apps_named_with_the_env_asked_for() {
    let supd = Supd::new();
    supd.write(
        "eco.toml",
        r#"
[[apps]]
name = "api"
script = "sh"
args = ["-c", "echo mode=$MODE; exec sleep 1000"]
[apps.env]
MODE = "development"
[apps.env_production]
MODE = "production"

[[apps]]
name = "worker"
script = "sh"
args = ["-c", "echo worker; exec sleep 1000"]
"#,
    );
    let (mut daemon, out, err) = run(
        &supd,
        &[],
        "eco.toml",
        &["--only", "api", "--env", "production"],
    );
    out.wait_line("api:0 | mode=production");
    let names: Vec<String> = supd
        .list()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["api"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = exit_of(&mut daemon.0);
    assert!(exit.success(), "{exit:?}; stderr:\n{}", err.text());
    assert!(!out.text().contains("worker"), "{}", out.text());
}
