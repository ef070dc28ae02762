//! Spawning instances and reaping every child through one mechanism.
//!
//! The [`Reaper`] owns the table of live children. It collects exit statuses
//! with `waitpid(-1, WNOHANG)` on each SIGCHLD and hands each one to whoever
//! spawned that pid; statuses of unknown pids (orphaned grandchildren
//! reparented to the subreaper daemon) are simply discarded, which is what
//! frees them. Spawning and reaping take the same lock, so a child that exits
//! at once cannot be reaped before its pid is in the table.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::OwnedFd;
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
}

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
        let reaper = Reaper { waiters: Arc::default() };
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
        let mut cmd = Command::new(spec.program);
        cmd.args(spec.args)
            .current_dir(spec.cwd)
            .env_clear()
            .envs(spec.env)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(spec.stdout)
            .stderr(spec.stderr);
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot exec {}: {e}", spec.program))
        })?;
        // Dropping `child` neither waits nor kills; the reaper owns its status.
        waiters.insert(child.id() as i32, tx);
        Ok((child.id(), rx))
    }
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

    #[tokio::test]
    async fn delivers_exit_codes_and_signals() {
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
            };
            reaper.spawn(spec).unwrap().1
        };
        assert_eq!(run("exit 7").await.unwrap(), Exit::Code(7));
        assert_eq!(run("kill -TERM $$").await.unwrap(), Exit::Signal(15));
    }

    #[tokio::test]
    async fn missing_program_is_an_error_naming_it() {
        let reaper = Reaper::start().unwrap();
        let env = BTreeMap::new();
        let spec = SpawnSpec {
            program: "/nonexistent/prog",
            args: &[],
            cwd: Path::new("/"),
            env: &env,
            stdout: devnull(),
            stderr: devnull(),
        };
        let err = reaper.spawn(spec).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prog"), "{err}");
    }
}
