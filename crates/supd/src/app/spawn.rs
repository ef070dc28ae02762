//! Starting one process: its pipes, notify socket, listening socket and
//! environment, and the task that watches it. The environment rule lives
//! here once, for a spawn and for `supctl env` alike.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use supd_supervisor::{SpawnSpec, transient};

use super::actor::App;
use super::lifecycle::Input;
use crate::logs::Stream;
use crate::node_preload;
use crate::readiness;

/// The descriptor number of the listening socket in every instance.
const LISTEN_FD: i32 = 3;

/// Environment variables of the caller that must not leak into an app:
/// they describe the caller's own supervisor, not ours.
const NOT_INHERITED: &[&str] = &[
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "NODE_CHANNEL_FD",
    "NODE_CHANNEL_SERIALIZATION_MODE",
];

impl App {
    /// Spawns a new process (a new generation) in record `i`, and steps
    /// the record on how that went. A launch waiting on the generation is
    /// answered by the step (at once, or when the process is ready).
    pub(super) fn spawn(&mut self, i: usize) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let slot = self.records[i].slot;
        let result = self.try_spawn(slot, generation);
        let record = &mut self.records[i];
        record.generation = generation;
        record.status_text = None;
        let input = match result {
            Ok(pid) => {
                record.spawn_failures = 0;
                record.started = Some(Instant::now());
                tracing::info!(app = %self.config.name, instance = slot, pid, "started");
                crate::pid_file::write(&self.config, slot, pid);
                Input::Spawned { pid }
            }
            Err(failure) => {
                // Worded by the step's `Fail`.
                record.last_error = Some(failure.message);
                let transient = failure.errno.is_some_and(transient::is_transient);
                Input::SpawnFailed { transient }
            }
        };
        self.feed(i, input);
    }

    /// Forks and execs one process with its pipes, sockets and environment,
    /// and starts the task that watches it.
    fn try_spawn(&mut self, slot: u32, generation: u64) -> Result<u32, SpawnFailure> {
        let format = self.config.log_date_format.clone();
        let mut pipe = |stream| {
            self.log
                .pipe(stream, slot, format.clone())
                .map_err(SpawnFailure::with("cannot create a log pipe"))
        };
        let (stdout, stderr) = (pipe(Stream::Out)?, pipe(Stream::Err)?);
        let ipc = self.config.readiness().waits() || self.config.learns_port();
        let channels = readiness::channels(ipc)
            .map_err(SpawnFailure::with("cannot create the notify socket"))?;
        let env = self.spawn_env(slot, Some(&channels.notify_address), channels.ipc.is_some());
        let ipc_fd = self.ipc_fd();
        let mut pass_fds = Vec::new();
        if let Some(listener) = self.listener.as_mut() {
            let port = listener.port();
            let socket = listener
                .socket(slot)
                .map_err(SpawnFailure::with(&format!("cannot bind port {port}")))?;
            pass_fds.push((socket, LISTEN_FD));
        }
        let (ipc_ours, ipc_theirs): (Option<_>, Option<OwnedFd>) = match channels.ipc {
            Some((ours, theirs)) => (Some(ours), Some(theirs)),
            None => (None, None),
        };
        if let Some(theirs) = &ipc_theirs {
            pass_fds.push((theirs.as_fd(), ipc_fd));
        }
        let spec = SpawnSpec {
            program: &self.config.script,
            args: &self.config.args,
            cwd: &self.config.cwd,
            env: &env,
            stdout,
            stderr,
            listen_pid: self.config.port.is_some(),
            pass_fds,
        };
        let (pid, exit) = self
            .reaper
            .spawn(spec)
            .map_err(|e| match e.raw_os_error() {
                Some(_) => SpawnFailure::with("cannot start a process")(e),
                // Already says which step failed ("cannot exec …").
                None => SpawnFailure {
                    message: e.to_string(),
                    errno: None,
                },
            })?;
        drop(ipc_theirs);
        let channels = (channels.notify, channels.notify_address, ipc_ours);
        self.watch_process(generation, exit, Some(channels));
        Ok(pid)
    }

    /// Everything a process of `slot` is spawned with: [`Self::instance_env`],
    /// its notify socket (`notify`, `None` for no process), the listening
    /// socket's variables and, with `ipc`, Node's IPC channel. The one rule
    /// both a spawn and `supctl env` read.
    fn spawn_env(&self, slot: u32, notify: Option<&str>, ipc: bool) -> BTreeMap<String, String> {
        let mut env = self.instance_env(slot);
        if let Some(address) = notify {
            env.insert("NOTIFY_SOCKET".into(), address.to_string());
        }
        if self.listener.is_some() {
            env.insert("LISTEN_FDS".into(), "1".into());
            env.insert("LISTEN_FDNAMES".into(), self.config.name.clone());
        }
        if ipc {
            env.insert("NODE_CHANNEL_FD".into(), self.ipc_fd().to_string());
            env.insert("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into());
        }
        env
    }

    /// The descriptor Node's IPC channel is passed on: the one after the
    /// listening socket, if any.
    fn ipc_fd(&self) -> i32 {
        LISTEN_FD + i32::from(self.listener.is_some())
    }

    /// The environment slot `slot`'s process was spawned with (the newest
    /// live one during a reload), as [`Self::spawn_env`] builds it from the
    /// config in force, with the `LISTEN_PID` the spawner sets in the child.
    /// A slot without a process shows what its next spawn gets, less the
    /// per-process channels. An unknown slot is an error naming the app.
    pub(super) fn env_of(&self, slot: u32) -> Result<BTreeMap<String, String>, String> {
        let Some(record) = self
            .records
            .iter()
            .filter(|r| r.slot == slot)
            .max_by_key(|r| (r.state.pid().is_some(), r.generation))
        else {
            return Err(format!(
                "app \"{}\" has no instance {slot} (it has {})",
                self.config.name, self.config.instances
            ));
        };
        let pid = record.state.pid();
        let kept = pid.and(self.channels.get(&record.generation));
        let mut env = self.spawn_env(
            slot,
            kept.map(|k| k.notify_address.as_str()),
            kept.is_some_and(|k| k.ipc.is_some()),
        );
        if let (Some(pid), Some(_)) = (pid, self.config.port) {
            env.insert("LISTEN_PID".into(), pid.to_string());
        }
        Ok(env)
    }

    /// The caller's environment, then the app's `env`, then what supd adds.
    fn instance_env(&self, slot: u32) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self
            .base_env
            .iter()
            .filter(|(k, _)| !NOT_INHERITED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(self.config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert("SUPD_APP_NAME".into(), self.config.name.clone());
        env.insert(self.config.instance_var.clone(), slot.to_string());
        env.insert("NODE_APP_INSTANCE".into(), slot.to_string());
        if let Some(port) = self.config.port {
            env.insert("PORT".into(), port.to_string());
        }
        if self.config.learns_port() {
            env.insert("SUPD_LEARN_PORT".into(), "1".into());
        }
        if (self.config.port.is_some() || self.config.learns_port())
            && let Some(options) =
                node_preload::node_options(env.get("NODE_OPTIONS").map(String::as_str))
        {
            env.insert("NODE_OPTIONS".into(), options);
        }
        if let Some(period) = self.config.watchdog {
            env.insert("WATCHDOG_USEC".into(), period.as_micros().to_string());
        }
        env
    }
}

/// Why a spawn failed: the message for `show`, and the errno behind it,
/// which tells a failure that passes (see [`transient`]).
struct SpawnFailure {
    message: String,
    errno: Option<i32>,
}

impl SpawnFailure {
    /// Turns an error of the step `what` into a failure.
    fn with(what: &str) -> impl Fn(std::io::Error) -> SpawnFailure + '_ {
        move |e| SpawnFailure {
            message: format!("{what}: {e}"),
            errno: e.raw_os_error(),
        }
    }
}
