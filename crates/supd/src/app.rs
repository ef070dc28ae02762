//! The app actor: one task per app owns its instances and runs their lifecycle.
//!
//! Commands and events from children (exits, readiness, timers) arrive on
//! two channels; the task handles one at a time, so no state is shared and
//! no lock is held across an await. After each step it publishes an
//! [`AppView`] on a `watch` channel: `list` reads that and never waits behind
//! a graceful stop. The step's replies go out after that publish (see
//! [`crate::replies`]), so whoever is answered already sees the change in
//! the view; the state file is written from the views alone.
//!
//! The actor offers primitives — launch one slot, retire one process, stop
//! all — and applies the restart policy to crashes by itself. Multi-step
//! operations (start, restart, reload, scale) are sequenced on top of these
//! by [`crate::ops`].

mod handle;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use supd_config::AppConfig;
use supd_proto::Status;
use supd_supervisor::group::{self, parse_signal};
use supd_supervisor::tree::Tree;
use supd_supervisor::{Decision, Exit, Policy, Reaper, RunHistory, SpawnSpec, transient};
use tokio::net::{UnixDatagram, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::handover::{self, FrozenApp, FrozenProcess};
use crate::instance::{Instance, describe_exit};
use crate::listeners::SlotSockets;
use crate::logs::{AppLog, Stream};
use crate::node_preload;
use crate::readiness::{self, Notice};
use crate::replies::Replies;
use crate::state::StateFile;
use crate::unserved::{PortWatch, Report, held};
pub use handle::{AppHandle, Trouble};

/// Where a learned port listens, from the host the app's `listen()` named:
/// every interface (`None`) for none or an "every interface" address, else
/// that address (`localhost` is 127.0.0.1); a host name is an error.
fn learned_host(host: Option<&str>) -> Result<Option<IpAddr>, String> {
    match host {
        None => Ok(None),
        Some(text) => {
            let ip = supd_config::parse_host(text.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|_| format!("host \"{text}\""))?;
            Ok((!ip.is_unspecified()).then_some(ip))
        }
    }
}

/// How long to keep polling a process group after SIGKILL before giving up
/// on it (a process in uninterruptible sleep can outlive any signal).
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often a draining process tree is polled.
const DRAIN_POLL: Duration = Duration::from_millis(10);
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

/// The environment of the `supctl` command that started or reloaded an app
/// (its caller's variables); every app that one command names shares it.
pub type Env = Arc<BTreeMap<String, String>>;

/// Lets apps brought back from a saved list or a handover share one [`Env`]
/// when their environments are equal, as they did when one command started
/// them.
#[derive(Default)]
pub struct SharedEnvs(Vec<Env>);

impl SharedEnvs {
    /// `env`, or an equal one already shared.
    pub fn share(&mut self, env: BTreeMap<String, String>) -> Env {
        if let Some(shared) = self.0.iter().find(|e| ***e == env) {
            return shared.clone();
        }
        let env = Arc::new(env);
        self.0.push(env.clone());
        env
    }
}

/// What the rest of the daemon sees of an app.
#[derive(Debug, Clone)]
pub struct AppView {
    /// The config new processes start with.
    pub config: Arc<AppConfig>,
    /// The environment of the `supctl start` that started the app.
    pub base_env: Env,
    /// Every process record, by slot; during a reload a slot has two.
    pub instances: Vec<Instance>,
    /// Where the app's port listens, as bound (`None` without a port).
    pub host: Option<IpAddr>,
    /// Why each slot whose port nobody serves is reported, by slot (see
    /// [`crate::unserved`]).
    pub unserved: BTreeMap<u32, String>,
}

/// A request to the actor, with the channel its answer goes back on.
pub enum Command {
    /// Start a process for `slot` and answer once it is online (ready, when
    /// its [`AppConfig::readiness`] waits) with its pid, or with why not. If the slot already has
    /// a live process (a reload), the new one runs beside it.
    Launch {
        /// Instance number.
        slot: u32,
        /// Whether it counts as a restart of the slot.
        kind: Launch,
        /// Why the slot is restarted (shown by `show`), if not by a user.
        reason: Option<String>,
        /// Pid, or the reason it failed.
        reply: oneshot::Sender<Result<u32, String>>,
    },
    /// Stop one process gracefully; answer once its whole group is gone.
    Retire {
        /// The process record, by generation.
        generation: u64,
        /// What becomes of the record afterwards.
        record: Retire,
        /// Done.
        reply: oneshot::Sender<()>,
    },
    /// Retire (and forget) `old`, superseded by the other live process of
    /// its slot — a reload's last step. Checked and done in one actor step:
    /// if that other process died meanwhile, `old` keeps serving and the
    /// answer is `false`. (Not the `update`'s [`handover`] of the whole
    /// daemon's state.)
    Supersede {
        /// The process being superseded, by generation.
        old: u64,
        /// Whether it was retired.
        reply: oneshot::Sender<bool>,
    },
    /// Replace the config (and caller environment) new processes get;
    /// rebinds the port if it changed.
    Configure {
        /// The new config.
        config: Box<AppConfig>,
        /// The new caller environment, if any.
        base_env: Option<Env>,
        /// Done, or why not (the new port could not be bound).
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Steer new connections to slots `0..slots` and close the sockets of
    /// higher slots that have no live process.
    Route {
        /// Slots that receive new connections.
        slots: u32,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A look at every slot's accept queue, at a monitor sample (see
    /// [`crate::unserved`]).
    LookAtQueues {
        /// The app's operation lock: held through the look if free, so no
        /// operation begins while a queue is reset; none is reset if taken.
        operations: Arc<tokio::sync::Mutex<()>>,
    },
    /// How many connections wait in the accept queue of a slot.
    Queued {
        /// The slot.
        slot: u32,
        /// The count.
        reply: oneshot::Sender<u32>,
    },
    /// Graceful stop of every instance.
    Stop(oneshot::Sender<()>),
    /// Stop, then end the actor.
    Delete(oneshot::Sender<()>),
    /// Send a signal to every running instance.
    Signal(Signal, oneshot::Sender<()>),
    /// Empty the log files.
    Flush(oneshot::Sender<Result<(), String>>),
    /// Zero the restart counters (`reset`); no process is touched.
    Reset(oneshot::Sender<()>),
    /// The environment of one instance (`supctl env`), or why there is none.
    Env {
        /// Instance number.
        slot: u32,
        /// The variables, or an error naming the app.
        reply: oneshot::Sender<Result<BTreeMap<String, String>, String>>,
    },
    /// Stop acting and describe everything for the daemon's next image
    /// (`update`); commands wait and child events stay queued until `Thaw`,
    /// and notices stay unread in their sockets.
    Freeze(oneshot::Sender<FrozenApp>),
    /// Act again: the next image did not take over.
    Thaw(oneshot::Sender<()>),
}

/// Whether a launch counts as a restart of its slot (the count `show`
/// reports): a start (or a scale up) does not, a restart or a replacement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// Not counted: `start`, `scale` up, a reload's start of a stopped app.
    Start,
    /// Counted: `restart`, a reload's new process, a replacement.
    Restart,
}

/// What becomes of a retired process's record once its group is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// It stays, stopped, so the slot's next process inherits its restart
    /// count (a stop-first swap).
    Keep,
    /// It is forgotten (a reload's old process, a slot scaled away).
    Remove,
}

/// What a stop of every instance leaves of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The app stays known, stopped (`stop`, `kill`).
    Keep,
    /// The actor ends once all are down and the app is forgotten (`delete`).
    Delete,
}

/// What is left to do for the process group of a launch that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftovers {
    /// It may still run (readiness timed out): SIGKILL it.
    Kill,
    /// The caller already killed it (the process exited).
    Killed,
}

/// Something that happened to a process, delivered to its actor. Every
/// event names the process by generation: events about a process that has
/// since been replaced find no record and are ignored.
enum Event {
    /// The main process ended.
    Exited { generation: u64, exit: Exit },
    /// The process said something on its notify socket or IPC channel.
    Notice { generation: u64, notice: Notice },
    /// `listen_timeout` is over.
    ReadyTimeout { generation: u64 },
    /// A restart delay is over.
    RestartDue { generation: u64 },
    /// `kill_timeout` is over during a stop.
    KillDue { generation: u64 },
    /// The process group of a stopped process is empty.
    GroupGone { generation: u64 },
    /// Time to check the process's watchdog keep-alives.
    WatchdogDue { generation: u64 },
}

/// Replies waiting on one process.
#[derive(Default)]
struct Waiting {
    launch: Option<oneshot::Sender<Result<u32, String>>>,
    retire: Vec<oneshot::Sender<()>>,
    remove_when_gone: bool,
}

/// The actor's state.
struct App {
    config: Arc<AppConfig>,
    base_env: Env,
    instances: Vec<Instance>,
    listener: Option<SlotSockets>,
    /// Where the port's connections go, and what its queues showed.
    ports: PortWatch,
    reaper: Reaper,
    log: AppLog,
    events: mpsc::UnboundedSender<Event>,
    /// Where `events` arrive.
    inbox: mpsc::UnboundedReceiver<Event>,
    /// Open while the processes' notices may be read (see [`readiness::Gate`]).
    notices: readiness::Gate,
    view: watch::Sender<AppView>,
    trouble: mpsc::UnboundedSender<Trouble>,
    state: StateFile,
    waiting: HashMap<u64, Waiting>,
    next_generation: u64,
    /// Replies of `Stop`/`Delete`, answered once nothing is stopping.
    after_stop: Vec<(oneshot::Sender<()>, Stop)>,
    deleted: bool,
    /// Copies of each running process's channels, by generation, to hand
    /// them over at an `update` (the originals are read by its watcher).
    channels: HashMap<u64, Kept>,
    /// Frozen for an `update`.
    frozen: Option<Frozen>,
    /// This step's replies, sent once its view is published.
    replies: Replies,
}

/// An app frozen for an `update`, until the exec or a thaw.
struct Frozen {
    /// Commands received meanwhile, run at the thaw.
    commands: Vec<Command>,
    /// Events queued before the freeze, other than notices, handled at the
    /// thaw before the ones queued after.
    events: Vec<Event>,
    /// Holds the notice gate closed.
    _notices: tokio::sync::OwnedRwLockWriteGuard<()>,
}

/// Copies of one process's notify socket and IPC channel.
struct Kept {
    notify: OwnedFd,
    notify_address: String,
    ipc: Option<OwnedFd>,
}

/// What an actor works with besides its own records.
pub struct Surroundings {
    /// The daemon's spawner and reaper.
    pub reaper: Reaper,
    /// The app's log files.
    pub log: AppLog,
    /// Where processes to replace are reported.
    pub trouble: mpsc::UnboundedSender<Trouble>,
    /// Told whenever what a restarted daemon would need changes.
    pub state: StateFile,
}

/// An actor's command channel and published view.
pub type Actor = (mpsc::UnboundedSender<Command>, watch::Receiver<AppView>);

/// Creates the actor of a new app (nothing started yet) and returns its
/// command channel and view. Binds the app's port first, if it has one,
/// unless `taken` holds its first slots' sockets (see [`crate::takeover`]).
pub fn spawn_actor(
    config: AppConfig,
    base_env: Env,
    taken: Vec<OwnedFd>,
    with: Surroundings,
) -> Result<Actor, String> {
    let listener = bind(&config, taken, None)?;
    // Every slot exists from the start, stopped, so `list` shows an app
    // that is registered but not running (a resurrected stopped app).
    let instances: Vec<Instance> = (0..config.instances).map(Instance::new).collect();
    let (app, actor, commands) = App::new(config, base_env, instances, listener, 1, with);
    tokio::spawn(app.run(commands));
    Ok(actor)
}

/// Recreates the actor of an app handed over by the daemon's previous image:
/// its records, sockets and running processes (whose exits arrive on
/// `exits`, by pid), timers re-armed from now; its environment is shared
/// through `envs`.
pub fn resume_actor(
    frozen: FrozenApp,
    exits: &mut HashMap<u32, oneshot::Receiver<Exit>>,
    envs: &mut SharedEnvs,
    with: Surroundings,
) -> Actor {
    let FrozenApp {
        config,
        base_env,
        instances,
        next_generation,
        sockets,
        processes,
        pipes: _,
    } = frozen;
    let listener = config.port.map(|port| {
        // SAFETY: the sockets of this app in the handover, taken once.
        let fds = sockets.into_iter().map(|fd| unsafe { handover::take(fd) });
        SlotSockets::adopt(config.host, port, fds.collect())
    });
    let base_env = envs.share(base_env);
    let (mut app, actor, commands) =
        App::new(config, base_env, instances, listener, next_generation, with);
    app.adopt(processes, exits);
    tokio::spawn(app.run(commands));
    actor
}

/// The daemon-owned listening sockets of an app with a port: the `taken`
/// ones of its first slots (the others are bound when needed), or new ones
/// (`held`: the app's current ones, when only its host changes).
fn bind(
    config: &AppConfig,
    taken: Vec<OwnedFd>,
    held: Option<&SlotSockets>,
) -> Result<Option<SlotSockets>, String> {
    config
        .port
        .map(|port| {
            if !taken.is_empty() {
                return Ok(SlotSockets::adopt(config.host, port, taken));
            }
            match held {
                Some(held) if held.port() == port => held.moved(config.host),
                _ => SlotSockets::bind(config.host, port),
            }
            .map_err(|e| {
                let on = config.host.map(|h| format!(" on {h}")).unwrap_or_default();
                format!("app \"{}\": cannot bind port {port}{on}: {e}", config.name)
            })
        })
        .transpose()
}

impl App {
    /// An actor's state, its handle and its command queue, not running yet.
    fn new(
        config: AppConfig,
        base_env: Env,
        instances: Vec<Instance>,
        listener: Option<SlotSockets>,
        next_generation: u64,
        with: Surroundings,
    ) -> (App, Actor, mpsc::UnboundedReceiver<Command>) {
        let config = Arc::new(config);
        let (view_tx, view_rx) = watch::channel(AppView {
            config: config.clone(),
            base_env: base_env.clone(),
            instances: instances.clone(),
            host: listener.as_ref().map(SlotSockets::host),
            unserved: BTreeMap::new(),
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let Surroundings {
            reaper,
            log,
            trouble,
            state,
        } = with;
        let app = App {
            ports: PortWatch::new(config.instances),
            config,
            base_env,
            instances,
            listener,
            reaper,
            log,
            events: ev_tx,
            inbox: ev_rx,
            notices: readiness::Gate::default(),
            view: view_tx,
            trouble,
            state,
            waiting: HashMap::new(),
            next_generation,
            after_stop: Vec::new(),
            deleted: false,
            channels: HashMap::new(),
            frozen: None,
            replies: Replies::default(),
        };
        (app, (cmd_tx, view_rx), cmd_rx)
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while !self.deleted {
            tokio::select! {
                Some(cmd) = commands.recv() => match (&mut self.frozen, cmd) {
                    (Some(_), Command::Thaw(reply)) => {
                        self.log.thaw();
                        if let Some(frozen) = self.frozen.take() {
                            frozen.events.into_iter().for_each(|ev| self.on_event(ev));
                            for cmd in frozen.commands {
                                self.on_command(cmd).await;
                            }
                        }
                        self.replies.send(reply, ());
                    }
                    (Some(frozen), cmd) => frozen.commands.push(cmd),
                    (None, cmd) => self.on_command(cmd).await,
                },
                Some(ev) = self.inbox.recv(), if self.frozen.is_none() => self.on_event(ev),
                else => break,
            }
            self.settle();
            self.steer();
            self.publish();
            self.replies.deliver();
        }
        tracing::info!(app = %self.config.name, "deleted");
    }

    /// Publishes the view, and has the state file rewritten if what it
    /// records (config, processes, stopped or not) changed since the last one.
    fn publish(&self) {
        let recorded_changed = {
            let last = self.view.borrow();
            // The last view holds the old config, so its address is not reused.
            !Arc::ptr_eq(&last.config, &self.config)
                || !Arc::ptr_eq(&last.base_env, &self.base_env)
                || last
                    .instances
                    .iter()
                    .map(Instance::recorded)
                    .ne(self.instances.iter().map(Instance::recorded))
        };
        self.view.send_replace(AppView {
            config: self.config.clone(),
            base_env: self.base_env.clone(),
            instances: self.instances.clone(),
            host: self.listener.as_ref().map(SlotSockets::host),
            unserved: self.ports.problems(),
        });
        // After the view: a write that sees the touch reads the change.
        if recorded_changed {
            self.state.touch();
        }
    }

    /// Steers the port's new connections to the slots that serve, if that
    /// changed (a failure is logged, and tried again at the next step).
    fn steer(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        if let Err(e) = self.ports.steer(listener, &self.instances) {
            tracing::error!(app = %self.config.name, port = listener.port(), "cannot steer connections: {e}");
        }
    }

    /// Looks at every slot's accept queue (see [`crate::unserved`]): reports
    /// a slot nobody serves, and resets the connections that wait where
    /// nobody will take them.
    fn look_at_queues(&mut self, operations: &tokio::sync::Mutex<()>) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        // Held to the end of this step if free: no operation starts meanwhile.
        let lock = operations.try_lock();
        let operation_running = lock.is_err();
        let instances = &self.instances;
        let holds = |generations: &[u64]| {
            let pids: Vec<u32> = instances
                .iter()
                .filter(|i| generations.contains(&i.generation))
                .filter_map(|i| i.pid)
                .collect();
            held::holds_connection(&pids, listener.port())
        };
        let decisions = self.ports.look(
            Instant::now(),
            listener,
            instances,
            operation_running,
            holds,
        );
        // Away from a slot found not served before its clients are reset,
        // so they do not reconnect into it.
        self.steer();
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        let (name, port) = (&self.config.name, listener.port());
        for (slot, decision) in decisions {
            match decision.report {
                Some(Report::NotServing) => tracing::warn!(
                    app = %name, instance = slot, port, queued = listener.queued(slot),
                    "connections wait on the port and nothing accepts them"
                ),
                Some(Report::ServingAgain) => {
                    tracing::info!(app = %name, instance = slot, port, "accepts connections again")
                }
                Some(Report::DownResetting) => tracing::warn!(
                    app = %name, instance = slot, port,
                    "no process will accept the connections of this slot: they are reset until one runs"
                ),
                None => {}
            }
            if decision.reset {
                match listener.reset_queued(slot) {
                    Ok(n) => {
                        tracing::debug!(app = %name, instance = slot, port, "reset {n} connection(s)")
                    }
                    Err(e) => tracing::error!(
                        app = %name, instance = slot, port,
                        "cannot reset the connections nobody would accept: {e}"
                    ),
                }
            }
        }
    }

    fn find(&self, generation: u64) -> Option<usize> {
        self.instances
            .iter()
            .position(|i| i.generation == generation)
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Launch {
                slot,
                kind,
                reason,
                reply,
            } => self.launch(slot, kind, reason, reply),
            Command::Supersede { old, reply } => {
                let successor = self.find(old).is_some_and(|i| {
                    let slot = self.instances[i].slot;
                    self.instances.iter().any(|o| {
                        o.slot == slot
                            && o.generation != old
                            && matches!(o.status, Status::Launching | Status::Online)
                    })
                });
                match self.find(old) {
                    Some(i) if successor => {
                        let waiting = self.waiting.entry(old).or_default();
                        waiting.remove_when_gone = true;
                        self.retire(i);
                        self.replies.send(reply, true);
                    }
                    // Already gone (crashed and forgotten): nothing to retire.
                    None => {
                        self.replies.send(reply, true);
                    }
                    Some(_) => {
                        self.replies.send(reply, false);
                    }
                }
            }
            Command::Retire {
                generation,
                record,
                reply,
            } => match self.find(generation) {
                Some(i) => {
                    let waiting = self.waiting.entry(generation).or_default();
                    waiting.retire.push(reply);
                    waiting.remove_when_gone |= record == Retire::Remove;
                    self.retire(i);
                }
                None => {
                    self.replies.send(reply, ());
                }
            },
            Command::Configure {
                config,
                base_env,
                reply,
            } => {
                let configured = self.configure(*config, base_env);
                self.replies.send(reply, configured);
            }
            Command::Route { slots, reply } => {
                let live = self
                    .instances
                    .iter()
                    .filter(|i| {
                        matches!(
                            i.status,
                            Status::Online | Status::Launching | Status::Stopping
                        )
                    })
                    .map(|i| i.slot + 1)
                    .max()
                    .unwrap_or(0);
                self.ports.route(slots);
                let result = match self.listener.as_mut() {
                    Some(l) => match self.ports.steer(l, &self.instances) {
                        Ok(()) => {
                            l.close_from(live.max(slots));
                            Ok(())
                        }
                        Err(e) => Err(format!(
                            "app \"{}\": cannot steer connections on port {}: {e}",
                            self.config.name,
                            l.port()
                        )),
                    },
                    None => Ok(()),
                };
                self.replies.send(reply, result);
            }
            Command::LookAtQueues { operations } => self.look_at_queues(&operations),
            Command::Queued { slot, reply } => {
                self.replies
                    .send(reply, self.listener.as_ref().map_or(0, |l| l.queued(slot)));
            }
            Command::Stop(reply) => self.stop_all(reply, Stop::Keep),
            Command::Delete(reply) => self.stop_all(reply, Stop::Delete),
            Command::Signal(sig, reply) => {
                for pid in self.instances.iter().filter_map(|i| i.pid) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
                }
                self.replies.send(reply, ());
            }
            Command::Flush(reply) => {
                self.replies.send(reply, self.log.truncate().await);
            }
            Command::Reset(reply) => {
                for inst in &mut self.instances {
                    inst.restarts = 0;
                    inst.history = RunHistory::default();
                }
                self.replies.send(reply, ());
            }
            Command::Env { slot, reply } => {
                self.replies.send(reply, self.env_of(slot));
            }
            Command::Freeze(reply) => {
                self.log.freeze().await;
                // No notice is read from here on; the ones read before are
                // handled now, so the handover has them. Other events wait.
                let closed = self.notices.clone().write_owned().await;
                let mut events = Vec::new();
                while let Ok(event) = self.inbox.try_recv() {
                    match event {
                        Event::Notice { .. } => self.on_event(event),
                        other => events.push(other),
                    }
                }
                self.frozen = Some(Frozen {
                    commands: Vec::new(),
                    events,
                    _notices: closed,
                });
                self.replies.send(reply, self.describe());
            }
            Command::Thaw(reply) => {
                self.replies.send(reply, ());
            }
        }
    }

    /// Everything the next image needs to go on with this app.
    fn describe(&self) -> FrozenApp {
        let processes = self
            .channels
            .iter()
            .map(|(&generation, kept)| FrozenProcess {
                generation,
                notify: kept.notify.as_raw_fd(),
                notify_address: kept.notify_address.clone(),
                ipc: kept.ipc.as_ref().map(AsRawFd::as_raw_fd),
            })
            .collect();
        FrozenApp {
            config: (*self.config).clone(),
            base_env: (*self.base_env).clone(),
            instances: self.instances.clone(),
            next_generation: self.next_generation,
            sockets: self
                .listener
                .as_ref()
                .map(SlotSockets::fds)
                .unwrap_or_default(),
            processes,
            pipes: self.log.frozen(),
        }
    }

    /// Takes over the processes the previous image started: watches each
    /// one's exit (and channels, when they were handed over too), and
    /// re-arms the timer its state needs.
    fn adopt(
        &mut self,
        processes: Vec<FrozenProcess>,
        exits: &mut HashMap<u32, oneshot::Receiver<Exit>>,
    ) {
        let mut channels: HashMap<u64, FrozenProcess> =
            processes.into_iter().map(|p| (p.generation, p)).collect();
        for i in 0..self.instances.len() {
            let inst = &mut self.instances[i];
            let generation = inst.generation;
            let Some(exit) = inst.pid.and_then(|pid| exits.remove(&pid)) else {
                continue;
            };
            let config = self.config.clone();
            match inst.status {
                Status::Launching => schedule(
                    &self.events,
                    config.listen_timeout,
                    Event::ReadyTimeout { generation },
                ),
                Status::Stopping => {
                    inst.kill_deadline = Some(later(config.kill_timeout));
                    schedule(
                        &self.events,
                        config.kill_timeout,
                        Event::KillDue { generation },
                    );
                }
                Status::Online => self.arm_watchdog(i),
                _ => {}
            }
            let process = channels.remove(&generation).and_then(|p| {
                // SAFETY: this process's channels in the handover, taken once.
                let (notify, ipc) = unsafe { (handover::take(p.notify), p.ipc.map(|fd| handover::take(fd))) };
                readiness::adopt(notify, ipc)
                    .map(|(notify, ipc)| (notify, p.notify_address, ipc))
                    .inspect_err(|e| tracing::error!(app = %config.name, generation, "cannot take over a process's notify socket: {e}"))
                    .ok()
            });
            self.watch_process(generation, exit, process);
        }
    }

    /// Starts the task that reports a process's exit and what it says on its
    /// channels (notify socket, address, IPC), keeping copies of those for an
    /// `update`.
    fn watch_process(
        &mut self,
        generation: u64,
        exit: oneshot::Receiver<Exit>,
        channels: Option<(UnixDatagram, String, Option<UnixStream>)>,
    ) {
        let listen = channels.map(|(notify, notify_address, ipc)| {
            let copies = notify.as_fd().try_clone_to_owned().and_then(|notify| {
                let ipc = ipc.as_ref().map(|s| s.as_fd().try_clone_to_owned()).transpose()?;
                Ok(Kept { notify, notify_address, ipc })
            });
            match copies {
                Ok(kept) => {
                    self.channels.insert(generation, kept);
                }
                Err(e) => tracing::warn!(app = %self.config.name, "cannot copy a process's channels; an update will not hand them over: {e}"),
            }
            (notify, ipc)
        });
        let events = self.events.clone();
        let gate = self.notices.clone();
        tokio::spawn(async move {
            let notices = events.clone();
            let on_notice = move |notice| {
                let _ = notices.send(Event::Notice { generation, notice });
            };
            let listening = async {
                match listen {
                    Some((notify, ipc)) => readiness::listen(notify, ipc, gate, on_notice).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                exit = exit => if let Ok(exit) = exit {
                    let _ = events.send(Event::Exited { generation, exit });
                },
                () = listening => {}
            }
        });
    }

    fn configure(&mut self, mut config: AppConfig, base_env: Option<Env>) -> Result<(), String> {
        // A learned port stays the app's port while it would be learned again.
        if self.config.port_learned && config.learns_port() {
            config.port = self.config.port;
            config.host = self.config.host;
            config.port_learned = true;
        }
        if (config.port, config.host) != (self.config.port, self.config.host) {
            self.listener = bind(&config, Vec::new(), self.listener.as_ref())?;
            self.ports.rebound();
        }
        self.log.configure(&config);
        self.config = Arc::new(config);
        if let Some(env) = base_env {
            self.base_env = env;
        }
        Ok(())
    }

    /// Starts a process for `slot`: in a stopped record of that slot if there
    /// is one, else in a new record (beside a live one, during a reload).
    fn launch(
        &mut self,
        slot: u32,
        kind: Launch,
        reason: Option<String>,
        reply: oneshot::Sender<Result<u32, String>>,
    ) {
        let live = |i: &Instance| {
            matches!(
                i.status,
                Status::Online | Status::Launching | Status::Stopping
            )
        };
        let index = match self
            .instances
            .iter()
            .position(|i| i.slot == slot && !live(i))
        {
            Some(i) => i,
            None => {
                let mut record = Instance::new(slot);
                // The slot's newest record carries its count: processes
                // replaced by earlier reloads may still be stopping.
                if let Some(old) = self
                    .instances
                    .iter()
                    .filter(|i| i.slot == slot)
                    .max_by_key(|i| i.generation)
                {
                    record.restarts = old.restarts;
                    record.restart_reason = old.restart_reason.clone();
                }
                let at = self
                    .instances
                    .iter()
                    .rposition(|i| i.slot <= slot)
                    .map_or(0, |p| p + 1);
                self.instances.insert(at, record);
                at
            }
        };
        let inst = &mut self.instances[index];
        // A user's start or restart is what ends `errored`.
        inst.history = RunHistory::default();
        inst.last_error = None;
        if kind == Launch::Restart {
            inst.restarts += 1;
        }
        if reason.is_some() {
            inst.restart_reason = reason;
        }
        self.spawn_record(index, Some(reply));
    }

    /// Spawns the process of record `i`. A launch reply is answered now
    /// (failure, or a readiness that does not wait) or when the process is
    /// ready.
    fn spawn_record(&mut self, i: usize, reply: Option<oneshot::Sender<Result<u32, String>>>) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let slot = self.instances[i].slot;
        let result = self.try_spawn(slot, generation);
        let name = self.config.name.clone();
        let waits = self.config.readiness().waits();
        // A new process beside a live one of its slot (a reload): if it
        // cannot start, the live one keeps serving and the record goes.
        let beside_live = self
            .instances
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.slot == slot && o.is_active());
        let inst = &mut self.instances[i];
        inst.generation = generation;
        inst.kill_deadline = None;
        inst.status_text = None;
        inst.late = false;
        match result {
            Ok(pid) => {
                inst.pid = Some(pid);
                inst.spawn_failures = 0;
                inst.started = Some(Instant::now());
                tracing::info!(app = %name, instance = slot, pid, "started");
                crate::pid_file::write(&self.config, slot, pid);
                if waits {
                    inst.status = Status::Launching;
                    self.waiting.entry(generation).or_default().launch = reply;
                    schedule(
                        &self.events,
                        self.config.listen_timeout,
                        Event::ReadyTimeout { generation },
                    );
                } else {
                    inst.status = Status::Online;
                    if let Some(reply) = reply {
                        self.replies.send(reply, Ok(pid));
                    }
                    self.arm_watchdog(i);
                }
            }
            Err(failure) => {
                inst.pid = None;
                let mut e = failure.message;
                if !beside_live && failure.errno.is_some_and(transient::is_transient) {
                    // Descriptors or disk space may come back: retry, not errored for good.
                    let delay = transient::retry_delay(inst.spawn_failures);
                    inst.spawn_failures += 1;
                    inst.status = Status::WaitingRestart;
                    e.push_str(&format!("; retrying in {} ms", delay.as_millis()));
                    schedule(&self.events, delay, Event::RestartDue { generation });
                } else {
                    inst.status = Status::Errored;
                }
                let msg = format!("app \"{name}\" instance {slot}: {e}");
                tracing::error!("{msg}");
                inst.last_error = Some(e);
                if let Some(reply) = reply {
                    self.replies.send(reply, Err(msg));
                }
                if beside_live {
                    self.instances.remove(i);
                }
            }
        }
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
    fn env_of(&self, slot: u32) -> Result<BTreeMap<String, String>, String> {
        let Some(record) = self
            .instances
            .iter()
            .filter(|i| i.slot == slot)
            .max_by_key(|i| (i.pid.is_some(), i.generation))
        else {
            return Err(format!(
                "app \"{}\" has no instance {slot} (it has {})",
                self.config.name, self.config.instances
            ));
        };
        let kept = record.pid.and(self.channels.get(&record.generation));
        let mut env = self.spawn_env(
            slot,
            kept.map(|k| k.notify_address.as_str()),
            kept.is_some_and(|k| k.ipc.is_some()),
        );
        if let (Some(pid), Some(_)) = (record.pid, self.config.port) {
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

    /// Begins the graceful stop of record `i` (kill_signal to its group,
    /// SIGKILL at kill_timeout). A record with no process is stopped at once.
    fn retire(&mut self, i: usize) {
        let signal = parse_signal(&self.config.kill_signal).unwrap_or(Signal::SIGINT);
        let timeout = self.config.kill_timeout;
        let inst = &mut self.instances[i];
        match (inst.status, inst.pid) {
            (Status::Launching | Status::Online, Some(pid)) => {
                inst.status = Status::Stopping;
                inst.kill_deadline = Some(later(timeout));
                let tree = Tree::of(pid);
                tree.signal(signal);
                inst.tree = Some(tree);
                schedule(
                    &self.events,
                    timeout,
                    Event::KillDue {
                        generation: inst.generation,
                    },
                );
            }
            (Status::Stopping, _) => {}
            _ => {
                inst.status = Status::Stopped;
                let generation = inst.generation;
                self.gone(generation);
            }
        }
    }

    /// Stops every record; `reply` once all are down (then the actor ends,
    /// for [`Stop::Delete`]).
    fn stop_all(&mut self, reply: oneshot::Sender<()>, then: Stop) {
        let generations: Vec<u64> = self.instances.iter().map(|i| i.generation).collect();
        for generation in generations {
            if let Some(i) = self.find(generation) {
                self.retire(i);
            }
        }
        self.after_stop.push((reply, then));
    }

    /// A record's process group is gone: answer its waiters, forget it if asked.
    fn gone(&mut self, generation: u64) {
        let Some(waiting) = self.waiting.remove(&generation) else {
            return;
        };
        if let Some(launch) = waiting.launch {
            self.replies
                .send(launch, Err("stopped before it was ready".into()));
        }
        if waiting.remove_when_gone
            && let Some(i) = self.find(generation)
        {
            self.instances.remove(i);
        }
        for reply in waiting.retire {
            self.replies.send(reply, ());
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Exited { generation, exit } => self.on_exit(generation, exit),
            Event::Notice { generation, notice } => self.on_notice(generation, notice),
            Event::ReadyTimeout { generation } => self.on_ready_timeout(generation),
            Event::RestartDue { generation } => {
                if let Some(i) = self.find(generation)
                    && self.instances[i].status == Status::WaitingRestart
                {
                    self.instances[i].restarts += 1;
                    self.spawn_record(i, None);
                }
            }
            Event::KillDue { generation } => {
                if let Some(i) = self.find(generation)
                    && self.instances[i].status == Status::Stopping
                    && let Some(pid) = self.instances[i].pid
                {
                    tracing::warn!(app = %self.config.name, pid, "kill_timeout reached: SIGKILL to the process tree");
                    let tree = self.instances[i].tree.get_or_insert_with(|| Tree::of(pid));
                    tree.refresh();
                    tree.signal(Signal::SIGKILL);
                }
            }
            Event::WatchdogDue { generation } => self.on_watchdog_due(generation),
            Event::GroupGone { generation } => {
                if let Some(i) = self.find(generation)
                    && self.instances[i].status == Status::Stopping
                {
                    self.instances[i].status = Status::Stopped;
                }
                self.gone(generation);
            }
        }
    }

    fn on_notice(&mut self, generation: u64, notice: Notice) {
        let Some(i) = self.find(generation) else {
            return;
        };
        let inst = &mut self.instances[i];
        match notice {
            Notice::Ready if inst.status == Status::Launching => {
                tracing::info!(app = %self.config.name, instance = inst.slot, pid = inst.pid, "ready");
                self.become_online(i, generation);
            }
            Notice::Ready => {
                // Late, after the timeout counted it online: no longer late.
                if inst.late {
                    inst.late = false;
                    inst.status_text = None;
                }
            }
            Notice::Watchdog => inst.last_keepalive = Some(Instant::now()),
            Notice::Stopping => inst.status_text = Some("stopping".into()),
            Notice::Status(text) => inst.status_text = Some(text),
            Notice::Listen { port, host } => {
                let slot = inst.slot;
                self.answer_listen(generation, slot, port, host.as_deref());
            }
        }
    }

    /// Answers the preload of process `generation` (of `slot`), which asks
    /// for the socket of the `port` (and `host`) its app's first `listen()`
    /// named: the slot's socket of the app's port, learning that port first
    /// if the app has none yet; or why not, which the preload writes on the
    /// app's stderr.
    fn answer_listen(&mut self, generation: u64, slot: u32, port: u16, host: Option<&str>) {
        let Some(ipc) = self.channels.get(&generation).and_then(|k| k.ipc.as_ref()) else {
            return;
        };
        let ipc = ipc.try_clone();
        let sent = ipc.and_then(|ipc| match self.socket_asked(slot, port, host) {
            Ok(socket) => readiness::send_socket(ipc.as_fd(), socket, port),
            Err(why) => {
                tracing::warn!(app = %self.config.name, instance = slot, "{why}");
                readiness::send_refusal(ipc.as_fd(), &why)
            }
        });
        if let Err(e) = sent {
            tracing::error!(app = %self.config.name, instance = slot, "cannot answer the request for port {port}: {e}");
        }
    }

    /// The socket of `slot` for `port` on `host` (as the app wrote it), which
    /// must be the app's port, or become it: learned, if the app learns its
    /// port ([`AppConfig::learns_port`]) and has none yet.
    fn socket_asked(
        &mut self,
        slot: u32,
        port: u16,
        host: Option<&str>,
    ) -> Result<BorrowedFd<'_>, String> {
        let name = self.config.name.clone();
        let asked = learned_host(host)
            .map_err(|e| format!("app \"{name}\" instance {slot}: listen() on {e}: supd binds a learned port on an IP address; set port and host in the app's config"))?;
        match self.config.port {
            Some(ours) if (ours, asked) != (port, self.config.host) => {
                let how = if self.config.port_learned {
                    "learned from the first listen()"
                } else {
                    "configured"
                };
                let on =
                    |host: Option<IpAddr>| host.map(|h| format!(" on {h}")).unwrap_or_default();
                return Err(format!(
                    "app \"{name}\" instance {slot}: listen() asked for port {port}{}, but the app's port is {ours}{} ({how}); every instance of a cluster app serves the same port",
                    on(asked),
                    on(self.config.host)
                ));
            }
            Some(_) => {}
            None if self.config.learns_port() => {
                let mut config = (*self.config).clone();
                config.port = Some(port);
                config.host = asked;
                config.port_learned = true;
                self.listener = bind(&config, Vec::new(), None)?;
                self.ports.rebound();
                tracing::info!(app = %name, port, "port learned from instance {slot}'s first listen()");
                self.config = Arc::new(config);
            }
            None => {
                return Err(format!(
                    "app \"{name}\" instance {slot}: asked for port {port}, but only a Node app in cluster mode has its port learned"
                ));
            }
        }
        let listener = self.listener.as_mut().ok_or("no listener")?;
        listener
            .socket(slot)
            .map_err(|e| format!("app \"{}\": cannot bind port {port}: {e}", self.config.name))
    }

    /// Marks the launching record `i` online, answers whoever waits on its
    /// launch, and starts its watchdog.
    fn become_online(&mut self, i: usize, generation: u64) {
        let inst = &mut self.instances[i];
        inst.status = Status::Online;
        let pid = inst.pid.unwrap_or_default();
        if let Some(reply) = self
            .waiting
            .get_mut(&generation)
            .and_then(|w| w.launch.take())
        {
            self.replies.send(reply, Ok(pid));
        }
        self.arm_watchdog(i);
    }

    /// Starts watching keep-alives of the (now online) record `i`, if the
    /// app has a `watchdog` period; becoming online counts as the first.
    fn arm_watchdog(&mut self, i: usize) {
        let Some(period) = self.config.watchdog else {
            return;
        };
        let inst = &mut self.instances[i];
        inst.last_keepalive = Some(Instant::now());
        schedule(
            &self.events,
            period,
            Event::WatchdogDue {
                generation: inst.generation,
            },
        );
    }

    /// An online process that sent no keep-alive for a whole period is
    /// reported for replacement; otherwise the next check is scheduled.
    fn on_watchdog_due(&mut self, generation: u64) {
        let (Some(period), Some(i)) = (self.config.watchdog, self.find(generation)) else {
            return;
        };
        let inst = &self.instances[i];
        if inst.status != Status::Online {
            return;
        }
        let last = inst.last_keepalive.unwrap_or_else(Instant::now);
        let silent = last.elapsed();
        if silent >= period {
            let reason = format!(
                "watchdog: no WATCHDOG=1 for {} ms (watchdog {} ms)",
                silent.as_millis(),
                period.as_millis()
            );
            let _ = self.trouble.send(Trouble {
                app: self.config.name.clone(),
                generation,
                reason,
            });
            // Looked at again a period later: if the replacement failed,
            // the process is still silent and is reported again.
            schedule(&self.events, period, Event::WatchdogDue { generation });
        } else {
            schedule(
                &self.events,
                period - silent,
                Event::WatchdogDue { generation },
            );
        }
    }

    /// Not ready within `listen_timeout`: the process is killed and the
    /// launch fails; a new process beside a live one (a reload) is forgotten.
    fn on_ready_timeout(&mut self, generation: u64) {
        let Some(i) = self.find(generation) else {
            return;
        };
        if self.instances[i].status != Status::Launching {
            return;
        }
        let readiness = self.config.readiness();
        let reason = readiness.timeout_reason(self.config.listen_timeout);
        if !readiness.fails_on_timeout() {
            let inst = &mut self.instances[i];
            tracing::warn!(app = %self.config.name, instance = inst.slot, pid = inst.pid, "{reason}");
            inst.status_text = Some(reason);
            inst.late = true;
            self.become_online(i, generation);
            return;
        }
        if self
            .waiting
            .get(&generation)
            .is_some_and(|w| w.launch.is_some())
        {
            self.fail_launch(i, reason, Leftovers::Kill);
        } else {
            // An automatic restart nobody waits on: kill it, and its exit
            // goes through the restart policy (back-off, max_restarts).
            let inst = &mut self.instances[i];
            tracing::warn!(app = %self.config.name, instance = inst.slot, "{reason}");
            inst.last_error = Some(reason);
            if let Some(pid) = inst.pid {
                group::signal(pid, Signal::SIGKILL);
            }
        }
    }

    /// Ends a launch that failed: kills what is left of the process group,
    /// answers the launch, and marks the record errored (or forgets it if its
    /// slot has another live process).
    fn fail_launch(&mut self, i: usize, reason: String, leftovers: Leftovers) {
        let inst = &mut self.instances[i];
        let (slot, generation) = (inst.slot, inst.generation);
        if leftovers == Leftovers::Kill
            && let Some(pid) = inst.pid
        {
            group::signal(pid, Signal::SIGKILL);
        }
        tracing::error!(app = %self.config.name, instance = slot, "{reason}");
        inst.status = Status::Errored;
        inst.last_error = Some(reason.clone());
        if let Some(reply) = self.waiting.remove(&generation).and_then(|w| w.launch) {
            self.replies.send(
                reply,
                Err(format!(
                    "app \"{}\" instance {slot}: {reason}",
                    self.config.name
                )),
            );
        }
        let beside_live = self
            .instances
            .iter()
            .any(|o| o.slot == slot && o.generation != generation && o.is_active());
        if beside_live {
            self.instances.remove(i);
        }
    }

    fn on_exit(&mut self, generation: u64, exit: Exit) {
        let Some(i) = self.find(generation) else {
            return;
        };
        let name = self.config.name.clone();
        let policy = Policy::from(&*self.config);
        let events = self.events.clone();
        let slot = self.instances[i].slot;
        // Another process of this slot starting or serving (a reload or a
        // replacement under way) takes over from this one.
        let replaced = self.instances.iter().any(|o| {
            o.slot == slot
                && o.generation != generation
                && matches!(o.status, Status::Launching | Status::Online)
        });
        self.channels.remove(&generation);
        let inst = &mut self.instances[i];
        let pgid = inst.pid.unwrap_or_default();
        let uptime = inst.started.map_or(Duration::ZERO, |t| t.elapsed());
        inst.record_exit(exit);
        tracing::info!(app = %name, instance = slot, pid = pgid, "exited with {}", describe_exit(exit));
        crate::pid_file::remove(&self.config, slot, pgid);
        match inst.status {
            Status::Stopping => {
                let deadline = inst.kill_deadline.unwrap_or_else(Instant::now);
                // Reaped already: only a tree seen before it exited is walked.
                let tree = inst.tree.take().unwrap_or_else(|| Tree::group(pgid));
                tokio::spawn(async move {
                    drain(tree, deadline).await;
                    let _ = events.send(Event::GroupGone { generation });
                });
            }
            Status::Launching
                if self
                    .waiting
                    .get(&generation)
                    .is_some_and(|w| w.launch.is_some()) =>
            {
                group::signal(pgid, Signal::SIGKILL);
                let hint = self.config.readiness().hint();
                self.fail_launch(
                    i,
                    format!(
                        "exited with {} before it was ready{}",
                        describe_exit(exit),
                        hint.map_or(String::new(), |h| format!("; {h}"))
                    ),
                    Leftovers::Killed,
                );
            }
            Status::Launching | Status::Online if replaced => {
                // Restarting this one would leave two processes in the slot.
                group::signal(pgid, Signal::SIGKILL);
                self.instances.remove(i);
                self.waiting.remove(&generation);
            }
            Status::Launching | Status::Online => {
                // The instance is its process group: leftovers of a crashed
                // leader would hold its port and its memory.
                group::signal(pgid, Signal::SIGKILL);
                match policy.on_exit(&mut inst.history, exit, uptime) {
                    Decision::Restart { delay } if delay.is_zero() => {
                        inst.restarts += 1;
                        self.spawn_record(i, None);
                    }
                    Decision::Restart { delay } => {
                        inst.status = Status::WaitingRestart;
                        schedule(&events, delay, Event::RestartDue { generation });
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

    /// Answers `Stop`/`Delete` once no record is still stopping.
    fn settle(&mut self) {
        if self.after_stop.is_empty() || self.instances.iter().any(|i| i.status == Status::Stopping)
        {
            return;
        }
        for (reply, then) in std::mem::take(&mut self.after_stop) {
            self.deleted |= then == Stop::Delete;
            self.replies.send(reply, ());
        }
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

/// `delay` from now; a delay too large for the clock means "far away".
fn later(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Delivers `event` to the actor behind `events` after `delay`.
fn schedule(events: &mpsc::UnboundedSender<Event>, delay: Duration, event: Event) {
    let events = events.clone();
    let at = tokio::time::Instant::from_std(later(delay));
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let _ = events.send(event);
    });
}

/// Waits until no process of `tree` is left (its group, and the
/// descendants that left it and theirs), sending SIGKILL at `deadline` if
/// some are.
async fn drain(mut tree: Tree, deadline: Instant) {
    let give_up = deadline.checked_add(KILL_GRACE).unwrap_or(deadline);
    let mut killed = false;
    while tree.alive() {
        // Children the escaped ones start meanwhile are theirs too.
        tree.refresh();
        let now = Instant::now();
        if now >= deadline && !killed {
            tree.signal(Signal::SIGKILL);
            killed = true;
        }
        if now >= give_up {
            tracing::error!(?tree, "process tree survived SIGKILL; giving up on it");
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learned_port_listens_where_the_app_asked() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        /// The host the app named, and where the port listens (or an error).
        type Case<'a> = (Option<&'a str>, Result<Option<IpAddr>, ()>);
        let table: &[Case] = &[
            (None, Ok(None)),
            (Some("0.0.0.0"), Ok(None)),
            (Some("::"), Ok(None)),
            (Some("127.0.0.1"), Ok(ip("127.0.0.1"))),
            (Some("localhost"), Ok(ip("127.0.0.1"))),
            (Some("::1"), Ok(ip("::1"))),
            (Some("[::1]"), Ok(ip("::1"))),
            (Some("example.com"), Err(())),
        ];
        for (host, want) in table {
            assert_eq!(learned_host(*host).map_err(|_| ()), *want, "{host:?}");
        }
    }

    #[test]
    fn equal_environments_are_shared_and_others_are_not() {
        let env = |value: &str| BTreeMap::from([("HOME".to_string(), value.to_string())]);
        let mut envs = SharedEnvs::default();
        let first = envs.share(env("/root"));
        let again = envs.share(env("/root"));
        let other = envs.share(env("/home/app"));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(other["HOME"], "/home/app");
    }
}
