//! The app actor: one task per app owns its instances and runs their lifecycle.
//!
//! Commands from the control socket and events from children (exits, timers)
//! arrive on two channels; the task handles one at a time, so no state is
//! shared and no lock is held across an await. After each step it publishes
//! an [`AppView`] on a `watch` channel: `list` reads that and never waits
//! behind a graceful stop.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use supd_config::AppConfig;
use supd_proto::{Outcome, Status};
use supd_supervisor::group::{self, parse_signal};
use supd_supervisor::{Decision, Exit, Policy, Reaper, RunHistory, SpawnSpec};
use tokio::sync::{mpsc, oneshot, watch};

use crate::instance::{Instance, describe_exit};
use crate::logs::{AppLog, Stream};

/// How long to keep polling a process group after SIGKILL before giving up
/// on it (a process in uninterruptible sleep can outlive any signal).
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often a draining group is polled.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Environment variables of the caller that must not leak into an app:
/// they describe the caller's own supervisor, not ours.
const NOT_INHERITED: &[&str] = &["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"];

/// What the rest of the daemon sees of an app.
#[derive(Debug, Clone)]
pub struct AppView {
    /// The config the instances run with.
    pub config: Arc<AppConfig>,
    /// Every slot, in order.
    pub instances: Vec<Instance>,
}

/// A request to the actor, with the channel its answer goes back on.
pub enum Command {
    /// Start every slot that is not running, first replacing the config if
    /// one is given (a user action: restart counters and errored state reset).
    Start {
        /// New config and caller environment, for `start FILE` of a known app.
        config: Option<(AppConfig, BTreeMap<String, String>)>,
        /// Started, already online, or why not.
        reply: oneshot::Sender<Result<Outcome, String>>,
    },
    /// Graceful stop of every instance.
    Stop(oneshot::Sender<()>),
    /// Stop, then start.
    Restart(oneshot::Sender<Result<(), String>>),
    /// Stop, then end the actor.
    Delete(oneshot::Sender<()>),
    /// Send a signal to every running instance.
    Signal(Signal, oneshot::Sender<()>),
    /// Empty the log files.
    Flush(oneshot::Sender<std::io::Result<()>>),
}

/// Something that happened to a child, delivered to its actor.
enum Event {
    /// The instance's main process ended.
    Exited { slot: u32, generation: u64, exit: Exit },
    /// A restart delay is over.
    RestartDue { slot: u32, generation: u64 },
    /// `kill_timeout` is over during a stop.
    KillDue { slot: u32, generation: u64 },
    /// The process group of a stopped instance is empty.
    GroupGone { slot: u32, generation: u64 },
}

/// What to do once every instance is stopped.
enum AfterStop {
    Reply(oneshot::Sender<()>),
    Start(oneshot::Sender<Result<(), String>>),
    Delete(oneshot::Sender<()>),
}

/// The actor's state.
struct App {
    config: Arc<AppConfig>,
    base_env: BTreeMap<String, String>,
    instances: Vec<Instance>,
    reaper: Reaper,
    log: AppLog,
    events: mpsc::UnboundedSender<Event>,
    view: watch::Sender<AppView>,
    after_stop: Vec<AfterStop>,
    deleted: bool,
}

/// Creates the actor of a new app (nothing started yet) and returns its
/// command channel and view.
pub fn spawn_actor(
    config: AppConfig,
    base_env: BTreeMap<String, String>,
    reaper: Reaper,
    log: AppLog,
) -> (mpsc::UnboundedSender<Command>, watch::Receiver<AppView>) {
    let config = Arc::new(config);
    let instances = (0..config.instances).map(Instance::new).collect::<Vec<_>>();
    let (view_tx, view_rx) = watch::channel(AppView { config: config.clone(), instances: instances.clone() });
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let app = App {
        config,
        base_env,
        instances,
        reaper,
        log,
        events: ev_tx,
        view: view_tx,
        after_stop: Vec::new(),
        deleted: false,
    };
    tokio::spawn(app.run(cmd_rx, ev_rx));
    (cmd_tx, view_rx)
}

impl App {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        while !self.deleted {
            tokio::select! {
                Some(cmd) = commands.recv() => self.on_command(cmd).await,
                Some(ev) = events.recv() => self.on_event(ev),
                else => break,
            }
            self.settle();
            self.publish();
        }
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn publish(&self) {
        self.view.send_replace(AppView { config: self.config.clone(), instances: self.instances.clone() });
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Start { config, reply } => {
                let _ = reply.send(self.start(config));
            }
            Command::Stop(reply) => self.stop_all(AfterStop::Reply(reply)),
            Command::Restart(reply) => self.stop_all(AfterStop::Start(reply)),
            Command::Delete(reply) => self.stop_all(AfterStop::Delete(reply)),
            Command::Signal(sig, reply) => {
                for pid in self.instances.iter().filter_map(|i| i.pid) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
                }
                let _ = reply.send(());
            }
            Command::Flush(reply) => {
                let _ = reply.send(self.log.truncate().await);
            }
        }
    }

    /// `start`: a user action on a stopped or errored app.
    fn start(&mut self, config: Option<(AppConfig, BTreeMap<String, String>)>) -> Result<Outcome, String> {
        if self.instances.iter().any(Instance::is_active) {
            return Ok(Outcome::AlreadyOnline);
        }
        if let Some((config, base_env)) = config {
            self.config = Arc::new(config);
            self.base_env = base_env;
        }
        self.resize();
        self.spawn_all(false)?;
        Ok(Outcome::Started)
    }

    /// Before a user's start or restart (every slot stopped): matches the
    /// slots to the configured count and forgets unstable runs and errors,
    /// since a user acting is what ends `errored`.
    fn resize(&mut self) {
        let want = self.config.instances;
        self.instances.truncate(want as usize);
        while (self.instances.len() as u32) < want {
            self.instances.push(Instance::new(self.instances.len() as u32));
        }
        for inst in &mut self.instances {
            inst.history = RunHistory::default();
            inst.last_error = None;
        }
    }

    /// Spawns every slot; the first failure is returned after trying all.
    fn spawn_all(&mut self, counts_as_restart: bool) -> Result<(), String> {
        let mut first_error = None;
        for i in 0..self.instances.len() {
            if counts_as_restart {
                self.instances[i].restarts += 1;
            }
            if let Err(e) = self.spawn_slot(i) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Starts the process of slot `i`. On failure the slot is `errored`.
    fn spawn_slot(&mut self, i: usize) -> Result<(), String> {
        let slot = self.instances[i].slot;
        let result = self.try_spawn(slot);
        let inst = &mut self.instances[i];
        inst.generation += 1;
        inst.kill_deadline = None;
        match result {
            Ok((pid, exit)) => {
                inst.pid = Some(pid);
                inst.started = Some(Instant::now());
                inst.status = Status::Online;
                let (events, generation) = (self.events.clone(), inst.generation);
                tokio::spawn(async move {
                    if let Ok(exit) = exit.await {
                        let _ = events.send(Event::Exited { slot, generation, exit });
                    }
                });
                tracing::info!(app = %self.config.name, instance = slot, pid, "started");
                Ok(())
            }
            Err(e) => {
                let msg = format!("app \"{}\" instance {slot}: {e}", self.config.name);
                tracing::error!("{msg}");
                inst.status = Status::Errored;
                inst.last_error = Some(e);
                Err(msg)
            }
        }
    }

    fn try_spawn(&self, slot: u32) -> Result<(u32, oneshot::Receiver<Exit>), String> {
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot create pipe: {e}"));
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let env = self.instance_env(slot);
        let spec = SpawnSpec {
            program: &self.config.script,
            args: &self.config.args,
            cwd: &self.config.cwd,
            env: &env,
            stdout: out_w,
            stderr: err_w,
        };
        let spawned = self.reaper.spawn(spec).map_err(|e| e.to_string())?;
        let format = self.config.log_date_format.clone();
        self.log.attach(Stream::Out, OwnedFd::from(out_r), format.clone());
        self.log.attach(Stream::Err, OwnedFd::from(err_r), format);
        Ok(spawned)
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
        env
    }

    /// Begins a graceful stop of every instance; `then` runs once all are down.
    fn stop_all(&mut self, then: AfterStop) {
        let signal = parse_signal(&self.config.kill_signal).unwrap_or(Signal::SIGINT);
        let timeout = self.config.kill_timeout;
        for inst in &mut self.instances {
            match (inst.status, inst.pid) {
                (Status::Launching | Status::Online, Some(pid)) => {
                    inst.status = Status::Stopping;
                    inst.kill_deadline = Some(Instant::now() + timeout);
                    group::signal(pid, signal);
                    let (events, slot, generation) = (self.events.clone(), inst.slot, inst.generation);
                    tokio::spawn(async move {
                        tokio::time::sleep(timeout).await;
                        let _ = events.send(Event::KillDue { slot, generation });
                    });
                }
                (Status::Stopping, _) => {}
                _ => inst.status = Status::Stopped,
            }
        }
        self.after_stop.push(then);
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Exited { slot, generation, exit } => self.on_exit(slot, generation, exit),
            Event::RestartDue { slot, generation } => {
                if let Some(i) = self.current(slot, generation, Status::WaitingRestart) {
                    self.instances[i].restarts += 1;
                    let _ = self.spawn_slot(i);
                }
            }
            Event::KillDue { slot, generation } => {
                if let Some(i) = self.current(slot, generation, Status::Stopping)
                    && let Some(pid) = self.instances[i].pid
                {
                    tracing::warn!(app = %self.config.name, instance = slot, pid, "kill_timeout reached: SIGKILL to the process group");
                    group::signal(pid, Signal::SIGKILL);
                }
            }
            Event::GroupGone { slot, generation } => {
                if let Some(i) = self.current(slot, generation, Status::Stopping) {
                    self.instances[i].status = Status::Stopped;
                }
            }
        }
    }

    /// The index of `slot` if it is still in `generation` and `status`.
    fn current(&self, slot: u32, generation: u64, status: Status) -> Option<usize> {
        self.instances
            .iter()
            .position(|i| i.slot == slot && i.generation == generation && i.status == status)
    }

    fn on_exit(&mut self, slot: u32, generation: u64, exit: Exit) {
        let Some(i) = self.instances.iter().position(|i| i.slot == slot && i.generation == generation) else {
            return;
        };
        let name = self.config.name.clone();
        let policy = Policy::from(&*self.config);
        let events = self.events.clone();
        let inst = &mut self.instances[i];
        let pgid = inst.pid.unwrap_or_default();
        let uptime = inst.started.map_or(Duration::ZERO, |t| t.elapsed());
        inst.record_exit(exit);
        tracing::info!(app = %name, instance = slot, pid = pgid, "exited with {}", describe_exit(exit));
        match inst.status {
            Status::Stopping => {
                let deadline = inst.kill_deadline.unwrap_or_else(Instant::now);
                tokio::spawn(async move {
                    drain_group(pgid, deadline).await;
                    let _ = events.send(Event::GroupGone { slot, generation });
                });
            }
            Status::Launching | Status::Online => {
                // The instance is its process group: leftovers of a crashed
                // leader would hold its port and its memory.
                group::signal(pgid, Signal::SIGKILL);
                match policy.on_exit(&mut inst.history, exit, uptime) {
                    Decision::Restart { delay } if delay.is_zero() => {
                        inst.restarts += 1;
                        let _ = self.spawn_slot(i);
                    }
                    Decision::Restart { delay } => {
                        inst.status = Status::WaitingRestart;
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = events.send(Event::RestartDue { slot, generation });
                        });
                    }
                    Decision::Stop => inst.status = Status::Stopped,
                    Decision::Errored { reason } => {
                        tracing::error!(app = %name, instance = slot, "errored: {reason}");
                        inst.status = Status::Errored;
                        inst.last_error = Some(reason);
                    }
                }
            }
            _ => {}
        }
    }

    /// Runs the continuations of stops once no instance is still stopping.
    fn settle(&mut self) {
        if self.after_stop.is_empty() || self.instances.iter().any(|i| i.status == Status::Stopping) {
            return;
        }
        for then in std::mem::take(&mut self.after_stop) {
            match then {
                AfterStop::Reply(reply) => {
                    let _ = reply.send(());
                }
                AfterStop::Start(reply) => {
                    self.resize();
                    let _ = reply.send(self.spawn_all(true));
                }
                AfterStop::Delete(reply) => {
                    self.deleted = true;
                    let _ = reply.send(());
                }
            }
        }
        if self.deleted {
            tracing::info!(app = %self.name(), "deleted");
        }
    }
}

/// Waits until the group led by `pgid` is empty, sending SIGKILL at
/// `deadline` if it is not.
async fn drain_group(pgid: u32, deadline: Instant) {
    let give_up = deadline + KILL_GRACE;
    let mut killed = false;
    while group::alive(pgid) {
        let now = Instant::now();
        if now >= deadline && !killed {
            group::signal(pgid, Signal::SIGKILL);
            killed = true;
        }
        if now >= give_up {
            tracing::error!(pgid, "process group survived SIGKILL; giving up on it");
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
