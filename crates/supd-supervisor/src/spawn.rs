//! Spawning instances and reaping every child through one mechanism.
//!
//! The [`Reaper`] owns the table of live children. It collects exit statuses
//! with `waitpid(-1, WNOHANG)` on each SIGCHLD and hands each one to whoever
//! spawned that pid; statuses of unknown pids (orphaned grandchildren
//! reparented to the subreaper daemon) are simply discarded, which is what
//! frees them. Spawning and reaping take the same lock, so a child that exits
//! at once cannot be reaped before its pid is in the table.
//!
//! The child is started the `vfork` way and exec'd by our own `execve`, with
//! argv and envp built beforehand (see [`child`]): between its start and the
//! exec only plain system calls happen (placing descriptors, writing the
//! child's own pid into the pre-allocated `LISTEN_PID=` entry), which a
//! multi-threaded parent requires.

mod child;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use crate::policy::Exit;
use child::ExecPlan;

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
    /// While set, exits are left unreaped (zombies keep their status): the
    /// daemon is about to hand its children to its next image.
    paused: Arc<AtomicBool>,
}

impl Reaper {
    /// Installs the SIGCHLD handler and starts the reaping task. Call it once,
    /// inside the runtime, before anything is spawned.
    pub fn start() -> io::Result<Reaper> {
        Reaper::adopting(&[]).map(|(reaper, _)| reaper)
    }

    /// Like [`Reaper::start`], taking over `pids`: children the daemon had
    /// before it re-executed itself. Their waiters exist before the first
    /// reap, so an exit that happened meanwhile (a zombie) is delivered too.
    /// Returns a receiver for each one's exit, in the order given.
    pub fn adopting(pids: &[u32]) -> io::Result<(Reaper, Vec<oneshot::Receiver<Exit>>)> {
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Reaper {
            waiters: Arc::default(),
            paused: Arc::default(),
        };
        let exits = {
            let mut waiters = reaper.waiters.lock().unwrap_or_else(|p| p.into_inner());
            pids.iter()
                .map(|&pid| {
                    let (tx, rx) = oneshot::channel();
                    let now = match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
                        Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Signal(sig as i32)),
                        // Not our child any more: the previous image reaped it.
                        Err(Errno::ECHILD) => Some(Exit::Unknown),
                        _ => None,
                    };
                    match now {
                        Some(exit) => {
                            let _ = tx.send(exit);
                        }
                        None => {
                            waiters.insert(pid as i32, tx);
                        }
                    }
                    rx
                })
                .collect()
        };
        let looping = reaper.clone();
        tokio::spawn(async move {
            loop {
                looping.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok((reaper, exits))
    }

    /// Stops reaping until [`Reaper::resume`]: exits stay with the kernel.
    /// A reap in progress finishes first.
    pub fn pause(&self) {
        let _waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Reaps again, starting with whatever exited while paused.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.reap_all();
    }

    /// Collects every exited child without blocking, unless paused.
    fn reap_all(&self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if self.paused.load(Ordering::SeqCst) {
            return;
        }
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
        let stdin = std::fs::File::open("/dev/null")?;
        let mut plan = ExecPlan::new(&spec, stdin.as_raw_fd())?;
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let pid = plan.start().map_err(|(failed, e)| match failed {
            Some(pid) => {
                // It exited before exec; nobody else may reap it (we hold the lock).
                let _ = waitpid(Pid::from_raw(pid), None);
                io::Error::new(e.kind(), format!("cannot exec {}: {e}", spec.program))
            }
            // The clone itself failed (EAGAIN, ENOMEM): the errno is kept, so
            // the caller can tell a failure that passes.
            None => e,
        })?;
        waiters.insert(pid, tx);
        Ok((pid as u32, rx))
    }
}

/// Checks, before an app is registered, that `program` can be exec'd: found
/// in the `PATH` of `env` (or ours) if it is a bare name, else (relative to
/// `cwd`) a file with execute permission. A file like `/etc/passwd` is
/// refused up front instead of leaving an errored app behind.
pub fn check_program(
    program: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(), String> {
    let path = child::resolve_program(program, env).map_err(|e| e.to_string())?;
    let path = cwd.join(path);
    let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).map_err(|_| {
        format!(
            "{} is not executable (chmod +x it, or name its interpreter as the script)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnull() -> OwnedFd {
        std::fs::File::create("/dev/null").unwrap().into()
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

        // The child starts clean: in its cwd, stdin on /dev/null, a process
        // group of its own, no signal blocked and SIGPIPE not ignored (Rust
        // ignores it in this test process). `exec grep` reads the shell's
        // own signal state, not that of a child it forked.
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let args = vec![
            "-c".to_string(),
            "pwd; readlink /proc/$$/fd/0; echo $$ $(cut -d' ' -f5 /proc/$$/stat); \
             exec grep -E '^Sig(Blk|Ign)' /proc/self/status"
                .to_string(),
        ];
        let spec = SpawnSpec {
            program: "sh",
            args: &args,
            cwd: Path::new("/usr"),
            env: &env,
            stdout: out_w,
            stderr: devnull(),
            pass_fds: Vec::new(),
            listen_pid: false,
        };
        let exit = reaper.spawn(spec).unwrap().1;
        assert_eq!(exit.await.unwrap(), Exit::Code(0));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(out_r), &mut out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..2], ["/usr", "/dev/null"], "{out}");
        let (pid, pgid) = lines[2].split_once(' ').unwrap();
        assert_eq!(pid, pgid, "{out}");
        assert_eq!(lines[3], "SigBlk:\t0000000000000000", "{out}");
        let ignored = u64::from_str_radix(lines[4].trim_start_matches("SigIgn:\t"), 16).unwrap();
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{out}");

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
