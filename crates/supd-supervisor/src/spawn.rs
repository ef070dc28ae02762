//! Spawning instances and reaping every child through one mechanism.
//!
//! The [`Reaper`] owns the table of live children. It collects exit statuses
//! with `waitpid(-1, WNOHANG)` on each SIGCHLD and hands each one to whoever
//! spawned that pid; statuses of unknown pids (orphaned grandchildren
//! reparented to the subreaper daemon) are simply discarded, which is what
//! frees them. Spawning and reaping take the same lock, so a child that exits
//! at once cannot be reaped before its pid is in the table.
//!
//! The child is exec'd by our own `execve` in a `pre_exec` hook, with argv
//! and envp built before the fork: between fork and exec only
//! async-signal-safe work happens (placing descriptors, writing the child's
//! own pid into the pre-allocated `LISTEN_PID=` entry), which a
//! multi-threaded parent requires.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, c_char};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use crate::policy::Exit;

/// What to run for one instance.
#[derive(Debug)]
pub struct SpawnSpec<'a> {
    /// Program: a path, or a bare name looked up in the `PATH` of `env`.
    pub program: &'a str,
    /// Arguments.
    pub args: &'a [String],
    /// Working directory.
    pub cwd: &'a Path,
    /// The complete environment (nothing else is inherited).
    pub env: &'a BTreeMap<String, String>,
    /// Becomes the child's stdout.
    pub stdout: OwnedFd,
    /// Becomes the child's stderr.
    pub stderr: OwnedFd,
    /// Descriptors the child gets at fixed numbers, e.g. the listening
    /// socket at 3 (at most [`MAX_PASSED_FDS`]).
    pub pass_fds: Vec<(BorrowedFd<'a>, RawFd)>,
    /// Add `LISTEN_PID=<the child's own pid>` to its environment.
    pub listen_pid: bool,
}

/// How many descriptors [`SpawnSpec::pass_fds`] may hold.
pub const MAX_PASSED_FDS: usize = 8;

type Waiters = HashMap<i32, oneshot::Sender<Exit>>;

/// Spawns children and delivers each one's exit status exactly once.
#[derive(Clone)]
pub struct Reaper {
    waiters: Arc<Mutex<Waiters>>,
}

impl Reaper {
    /// Installs the SIGCHLD handler and starts the reaping task. Call it once,
    /// inside the runtime, before anything is spawned.
    pub fn start() -> io::Result<Reaper> {
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Reaper {
            waiters: Arc::default(),
        };
        let waiters = reaper.waiters.clone();
        tokio::spawn(async move {
            loop {
                reap_all(&waiters);
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Starts a process in a new process group with exactly `spec.env`, stdin
    /// on /dev/null and no other inherited descriptor (everything the daemon
    /// opens is close-on-exec). Returns its pid and a receiver for its exit.
    pub fn spawn(&self, spec: SpawnSpec<'_>) -> io::Result<(u32, oneshot::Receiver<Exit>)> {
        if !spec.cwd.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("working directory {} does not exist", spec.cwd.display()),
            ));
        }
        if spec.pass_fds.len() > MAX_PASSED_FDS {
            return Err(io::Error::other(format!(
                "at most {MAX_PASSED_FDS} descriptors can be passed"
            )));
        }
        let mut plan = ExecPlan::new(&spec)?;
        let mut cmd = Command::new(spec.program);
        cmd.current_dir(spec.cwd)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(spec.stdout)
            .stderr(spec.stderr);
        // SAFETY: `ExecPlan::exec` only makes async-signal-safe calls on
        // memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || plan.exec());
        }
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot exec {}: {e}", spec.program)))?;
        // Dropping `child` neither waits nor kills; the reaper owns its status.
        waiters.insert(child.id() as i32, tx);
        Ok((child.id(), rx))
    }
}

/// Everything the child needs to exec, allocated before the fork.
struct ExecPlan {
    program: CString,
    /// Owns the strings `argv` points into.
    _args: Vec<CString>,
    argv: Vec<*const c_char>,
    /// Owns the strings `envp` points into.
    _env: Vec<CString>,
    envp: Vec<*const c_char>,
    /// `LISTEN_PID=` followed by room for the digits and a NUL, when asked.
    listen_pid: Option<Box<[u8; 32]>>,
    fds: Vec<(RawFd, RawFd)>,
    /// The descriptor limit to give back (see [`crate::limits`]).
    open_files: Option<libc::rlimit>,
}

// SAFETY: the raw pointers point into buffers the plan owns; it is used by
// one thread at a time (moved into the pre_exec hook).
unsafe impl Send for ExecPlan {}
// SAFETY: as above; the hook runs only in the forked child.
unsafe impl Sync for ExecPlan {}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

impl ExecPlan {
    fn new(spec: &SpawnSpec<'_>) -> io::Result<ExecPlan> {
        let cstring = |s: &str| {
            CString::new(s).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("NUL byte in {s:?}"))
            })
        };
        let program = cstring(&resolve_program(spec.program, spec.env)?)?;
        let args = std::iter::once(spec.program)
            .chain(spec.args.iter().map(String::as_str))
            .map(cstring)
            .collect::<io::Result<Vec<_>>>()?;
        let env = spec
            .env
            .iter()
            .filter(|(k, _)| !(spec.listen_pid && k.as_str() == "LISTEN_PID"))
            .map(|(k, v)| cstring(&format!("{k}={v}")))
            .collect::<io::Result<Vec<_>>>()?;
        let mut listen_pid = spec.listen_pid.then(|| Box::new([0u8; 32]));
        let mut envp: Vec<*const c_char> = env.iter().map(|c| c.as_ptr()).collect();
        if let Some(buf) = listen_pid.as_mut() {
            buf[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
            envp.push(buf.as_ptr().cast());
        }
        envp.push(std::ptr::null());
        let mut argv: Vec<*const c_char> = args.iter().map(|c| c.as_ptr()).collect();
        argv.push(std::ptr::null());
        let fds = spec
            .pass_fds
            .iter()
            .map(|(fd, target)| (fd.as_raw_fd(), *target))
            .collect();
        Ok(ExecPlan {
            program,
            _args: args,
            argv,
            _env: env,
            envp,
            listen_pid,
            fds,
            open_files: crate::limits::for_children(),
        })
    }

    /// Runs in the child between fork and exec: async-signal-safe calls only,
    /// no allocation. Returns only if exec failed.
    fn exec(&mut self) -> io::Result<()> {
        // Move every source out of the way first, so a source that sits on
        // another's target number is not clobbered.
        let mut moved = [-1; MAX_PASSED_FDS];
        for (slot, &(fd, _)) in moved.iter_mut().zip(&self.fds) {
            // SAFETY: plain descriptor syscalls.
            *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
            if *slot < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for (&tmp, &(_, target)) in moved.iter().zip(&self.fds) {
            // dup2 clears close-on-exec on the target.
            // SAFETY: plain descriptor syscalls.
            if unsafe { libc::dup2(tmp, target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(limit) = &self.open_files {
            // Lowering a soft limit cannot fail (and would be harmless if it did).
            // SAFETY: a plain syscall on a value prepared before the fork.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) };
        }
        if let Some(buf) = self.listen_pid.as_mut() {
            // SAFETY: getpid cannot fail.
            let pid = unsafe { libc::getpid() } as u32;
            write_decimal(&mut buf[LISTEN_PID_PREFIX.len()..], pid);
        }
        // SAFETY: argv and envp are NUL-terminated arrays of pointers to
        // NUL-terminated strings owned by `self`.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        Err(io::Error::last_os_error())
    }
}

/// Writes `n` in decimal followed by a NUL into `out` (which has room).
fn write_decimal(out: &mut [u8], mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    out[len] = 0;
}

/// The path to exec: `program` itself if it has a `/`, else the first
/// executable of that name in the `PATH` of `env` (or ours), like a shell.
fn resolve_program(program: &str, env: &BTreeMap<String, String>) -> io::Result<String> {
    if program.contains('/') {
        return Ok(program.to_string());
    }
    let path = env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| {
            nix::unistd::access(candidate, nix::unistd::AccessFlags::X_OK).is_ok()
                && candidate.is_file()
        })
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{program}: not found in PATH"),
            )
        })
}

/// Collects every exited child without blocking.
fn reap_all(waiters: &Mutex<Waiters>) {
    let mut waiters = waiters.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let (pid, exit) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("waitpid failed: {e}");
                return;
            }
        };
        if let Some(tx) = waiters.remove(&pid.as_raw()) {
            let _ = tx.send(exit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnull() -> OwnedFd {
        std::fs::File::create("/dev/null").unwrap().into()
    }

    #[test]
    fn decimal() {
        let mut buf = [0xffu8; 12];
        write_decimal(&mut buf, 40213);
        assert_eq!(&buf[..6], b"40213\0");
        write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
    }

    /// One test, because a process may run only one reaper: two would
    /// steal each other's exit statuses.
    #[tokio::test]
    async fn spawns_reaps_and_reports_exec_failures() {
        let reaper = Reaper::start().unwrap();
        let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        let run = |script: &str| {
            let args = vec!["-c".to_string(), script.to_string()];
            let spec = SpawnSpec {
                program: "sh",
                args: &args,
                cwd: Path::new("/"),
                env: &env,
                stdout: devnull(),
                stderr: devnull(),
                pass_fds: Vec::new(),
                listen_pid: true,
            };
            reaper.spawn(spec).unwrap().1
        };
        assert_eq!(run("exit 7").await.unwrap(), Exit::Code(7));
        assert_eq!(run("kill -TERM $$").await.unwrap(), Exit::Signal(15));
        assert_eq!(
            run("[ \"$LISTEN_PID\" = $$ ]").await.unwrap(),
            Exit::Code(0)
        );

        for program in ["/nonexistent/prog", "no-such-program-in-path"] {
            let spec = SpawnSpec {
                program,
                args: &[],
                cwd: Path::new("/"),
                env: &env,
                stdout: devnull(),
                stderr: devnull(),
                pass_fds: Vec::new(),
                listen_pid: false,
            };
            let err = reaper.spawn(spec).unwrap_err();
            assert!(err.to_string().contains(program), "{err}");
        }
    }
}
