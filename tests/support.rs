//! Shared helpers for the end-to-end tests: locating binaries, free ports,
//! and processes that are always cleaned up.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

mod load;
pub use load::{Connection, KeepAliveLoad, Load, get_fresh};

/// Path of a workspace binary (`supd`, `supctl`, `api-gateway`, ...) built in
/// the same profile as this test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/e2e-HASH -> target/<profile>/NAME
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// A file of tests/fixtures (the Node test apps).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `check` every 20 ms until it returns `Some`, panicking with `what`
/// after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing
/// test leaves nothing behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes this test process a child subreaper, once. A daemon started by
/// `supctl` is orphaned when supctl exits; this way it is reparented to us
/// and [`Supd`] can reap it, instead of leaving a zombie where PID 1 does
/// not reap (as in some containers).
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// How long any single supctl invocation may take in a test.
const CMD_LIMIT: Duration = Duration::from_secs(60);

/// One daemon with its own temporary `SUPD_HOME` (and a work folder for the
/// test's scripts and files). Dropping it runs `supctl kill`, reaps the
/// daemon, and SIGKILLs any process group it still knew about, and those of
/// daemons it [crashed](Supd::crash).
pub struct Supd {
    /// The temporary folder: `home/` is SUPD_HOME, `work/` holds test files.
    root: tempfile::TempDir,
    /// Instance pids (and process groups) that crashed daemons left.
    strays: std::sync::Mutex<Vec<u32>>,
}

impl Supd {
    /// A fresh, not yet started daemon home.
    pub fn new() -> Supd {
        become_subreaper();
        let root = tempfile::Builder::new()
            .prefix("supd-e2e")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(root.path().join("work")).unwrap();
        Supd {
            root,
            strays: Default::default(),
        }
    }

    /// `SUPD_HOME`.
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// The test's work folder.
    pub fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// Writes a file under the work folder and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.work().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Starts app `app`: one process that runs until signalled, then waits
    /// for the returned [`Release`] before it exits (`kill_timeout` 60 s),
    /// so each of its processes stays "stopping" as long as the test wants.
    /// It runs in cluster mode, so a reload starts the new process before it
    /// stops the old one (a fork app without a port is stopped first).
    pub fn start_lingering(&self, app: &str) -> Release {
        let release = Release(self.work().join(format!("{app}.release")));
        let script = self.script(
            &format!("{app}.sh"),
            &format!(
                "trap 'while [ ! -f {} ]; do sleep 0.05; done; exit 0' INT TERM\nwhile :; do sleep 0.1; done",
                release.0.display()
            ),
        );
        self.start_script(
            app,
            &script,
            "kill_timeout = \"60s\"\nexec_mode = \"cluster\"\n",
        );
        release
    }

    /// Starts `script` as the app `name` from an ecosystem file, with `keys`
    /// (TOML lines, each ending in `\n`) added to the app.
    pub fn start_script(&self, name: &str, script: &Path, keys: &str) {
        let file = self.write(
            &format!("{name}.toml"),
            &format!(
                "[[apps]]\nname = \"{name}\"\nscript = \"{}\"\n{keys}",
                script.display()
            ),
        );
        self.ok(&["start", file.to_str().unwrap()]);
    }

    /// Makes app `app`'s stdout log file a FIFO: a "disk" the test controls
    /// (see [`fifo_reader`]). Returns its path.
    pub fn log_fifo(&self, app: &str) -> PathBuf {
        let logs = self.home().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let path = logs.join(format!("{app}-out.log"));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        path
    }

    /// A tiny npm project in the work folder, what a PM2 user puts behind
    /// `script = "npm"`: `npm start` runs `node server.js`, an HTTP server
    /// on `PORT` answering `ok`.
    pub fn npm_project(&self) {
        self.write(
            "package.json",
            r#"{"name": "web", "version": "1.0.0", "scripts": {"start": "node server.js"}}"#,
        );
        self.write(
            "server.js",
            "require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT);\n",
        );
    }

    /// Writes an executable shell script under the work folder.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(name, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A `supctl` command bound to this home, run from the work folder.
    pub fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(bin("supctl"));
        cmd.args(args)
            .env("SUPD_HOME", self.home())
            .current_dir(self.work());
        cmd
    }

    /// Runs supctl to completion; killed (and the test failed) after a minute.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.output(self.cmd(args), args)
    }

    /// Runs a supctl command to completion, bounded like [`Supd::run`].
    pub fn output(&self, cmd: std::process::Command, args: &[&str]) -> std::process::Output {
        self.output_within(cmd, CMD_LIMIT)
            .unwrap_or_else(|| panic!("supctl {args:?} did not finish within {CMD_LIMIT:?}"))
    }

    /// Runs a supctl command to completion; `None`, the command killed, if
    /// it takes longer than `limit`. Never panics, so `Drop` can use it.
    fn output_within(
        &self,
        mut cmd: std::process::Command,
        limit: Duration,
    ) -> Option<std::process::Output> {
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().ok()?;
        let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = drain(child.stdout.take().map(|s| Box::new(s) as _));
        let stderr = drain(child.stderr.take().map(|s| Box::new(s) as _));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().ok()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        Some(std::process::Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }

    /// Runs supctl, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(self.run(args), args)
    }

    /// Starts the daemon (`supctl ping`) under a soft open-files limit of
    /// `soft` (at most the hard limit), which the daemon inherits: the
    /// default of many sessions is 1024.
    pub fn start_with_open_files(&self, soft: u64) {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        use std::os::unix::process::CommandExt;
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        self.start_with(|cmd| {
            // SAFETY: setrlimit is a plain system call, fine between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard)
                        .map_err(std::io::Error::from)
                });
            }
        });
    }

    /// Starts the daemon (`supctl ping`) from a `supctl` command `setup`
    /// prepared: the daemon inherits its environment and limits.
    pub fn start_with(&self, setup: impl FnOnce(&mut std::process::Command)) {
        let mut cmd = self.cmd(&["ping"]);
        setup(&mut cmd);
        succeeded(self.output(cmd, &["ping"]), &["ping"]);
    }

    /// Runs supctl, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "supctl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `supctl list --json`.
    pub fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["list", "--json"])).expect("list --json is JSON")
    }

    /// The `list --json` row of one instance.
    pub fn instance(&self, name: &str, instance: u64) -> serde_json::Value {
        self.list()
            .into_iter()
            .find(|p| p["name"] == name && p["instance"] == instance)
            .unwrap_or_else(|| panic!("{name}:{instance} is not in the list"))
    }

    /// Waits until `pred` holds for instance `instance` of `name`; returns its row.
    pub fn wait_instance(
        &self,
        name: &str,
        instance: u64,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for(Duration::from_secs(20), what, || {
            self.list()
                .into_iter()
                .find(|p| p["name"] == name && p["instance"] == instance && pred(p))
        })
    }

    /// `supctl show NAME --json`.
    pub fn show(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["show", name, "--json"])).expect("show --json is JSON")
    }

    /// The daemon's pid, if it wrote its pid file.
    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home().join("supd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until a daemon the test started by hand has bound its socket.
    /// A command before that would find no daemon and start another one
    /// (from the build folder, without the test's flags).
    pub fn wait_for_socket(&self) {
        wait_for(Duration::from_secs(10), "the daemon's socket", || {
            self.home().join("supd.sock").exists().then_some(())
        });
    }

    /// Starts a daemon the way an init system would (`program` with `args`,
    /// this test's home, stderr discarded) and waits for its socket; it is
    /// killed when the returned guard drops.
    pub fn spawn_daemon(&self, program: &Path, args: &[&str]) -> KillOnDrop {
        let daemon = std::process::Command::new(program)
            .args(args)
            .env("SUPD_HOME", self.home())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let daemon = KillOnDrop(daemon);
        self.wait_for_socket();
        daemon
    }

    /// SIGKILLs the daemon, as a crash would, and reaps it; its apps keep
    /// running. Returns the pids of the instances it had; they are also
    /// SIGKILLed at drop, in case no later daemon replaced them.
    pub fn crash(&self) -> Vec<u32> {
        let daemon = self.daemon_pid().expect("a running daemon");
        let pids: Vec<u32> = self
            .list()
            .iter()
            .filter_map(|p| p["pid"].as_u64().map(|p| p as u32))
            .collect();
        self.strays.lock().unwrap().extend(&pids);
        let pid = nix::unistd::Pid::from_raw(daemon as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill -9 supd");
        // It was reparented to us (a subreaper) when the supctl that started it exited.
        let _ = nix::sys::wait::waitpid(pid, None);
        wait_for(
            Duration::from_secs(10),
            "the killed daemon to be gone",
            || (!exists(daemon)).then_some(()),
        );
        pids
    }
}

impl Drop for Supd {
    fn drop(&mut self) {
        // Nothing here may panic: a panic while a failed test unwinds aborts
        // the test binary and leaves every process behind.
        let groups: Vec<u32> = if self.daemon_pid().is_some() {
            let listed = self.output_within(self.cmd(&["list", "--json"]), CMD_LIMIT);
            serde_json::from_slice::<Vec<serde_json::Value>>(
                &listed.map(|o| o.stdout).unwrap_or_default(),
            )
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p["pid"].as_u64().map(|p| p as u32))
            .collect()
        } else {
            Vec::new()
        };
        // The daemon that answered (one started after a crash, maybe).
        let daemon = self.daemon_pid();
        let _ = self.output_within(self.cmd(&["kill"]), CMD_LIMIT);
        let strays = std::mem::take(self.strays.get_mut().unwrap_or_else(|p| p.into_inner()));
        for &pgid in groups.iter().chain(&strays) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // A crashed daemon's instances were reparented to us: reap them.
        for pid in strays {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
        if let Some(pid) = daemon {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            if alive(pid.as_raw() as u32) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            // Reap it if it was reparented to us; ECHILD otherwise.
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// Asserts that supctl succeeded; its stdout.
fn succeeded(out: std::process::Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "supctl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The zombies whose parent is `parent`: their `/proc/PID/stat` lines.
pub fn zombie_children(parent: u32) -> Vec<String> {
    let parent = parent.to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace();
            (fields.next()? == "Z" && fields.next()? == parent).then_some(stat)
        })
        .collect()
}

/// Whether `pid` is running (a zombie counts as not running).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Whether `pid` exists at all, zombie or not.
pub fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The soft open-files limit of a running process, from `/proc/PID/limits`.
pub fn open_files_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    line.split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// Opens a FIFO for reading, non-blocking, without waiting for a writer.
pub fn fifo_reader(path: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap()
}

/// Lets the processes of a [`Supd::start_lingering`] app exit: when dropped,
/// at the latest, so a failed test never leaves them waiting.
pub struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

/// A small tmpfs mounted over a folder: a disk that fills up (the tests run
/// as root). Unmounted when dropped (lazily, as the daemon may still hold
/// files in it), so declare it after the [`Supd`] whose home it is in.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes (`64k`, `1m`), mode 0700, at `at`.
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ],
            at,
        );
        Tmpfs(at.to_path_buf())
    }

    /// Gives it another size: space returns.
    pub fn resize(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], &self.0);
    }
}

fn mount(args: &[&str], at: &Path) {
    let status = std::process::Command::new("mount")
        .args(args)
        .arg(at)
        .status()
        .expect("mount");
    assert!(status.success(), "mount {args:?} {}", at.display());
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
