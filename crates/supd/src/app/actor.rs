//! The actor's loop and its commands: it takes one command, child event or
//! due timer at a time, turns it into [`Input`]s for the records concerned
//! (the lifecycle decides, [`super::effects`] acts), then steers the port,
//! publishes the view and sends the step's replies.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use supd_config::AppConfig;
use supd_proto::Status;
use supd_supervisor::{Policy, Reaper, RunHistory};
use tokio::sync::{mpsc, oneshot, watch};

use super::freeze::{Frozen, Kept};
use super::lifecycle::{Input, Timer};
use super::record::Record;
use super::timers::Timers;
use super::{Actor, AppView, Command, Env, Launch, Retire, Stop, Surroundings, Trouble};
use crate::changes::Changes;
use crate::instance::Instance;
use crate::listeners::SlotSockets;
use crate::logs::AppLog;
use crate::readiness::{self, Notice};
use crate::replies::Replies;
use crate::unserved::PortWatch;

/// Something that happened to a process, delivered to its actor by the
/// task that watches it. Every event names the process by generation:
/// events about a process that has since been replaced find no record and
/// are ignored.
pub(super) enum Event {
    /// The main process ended.
    Exited {
        generation: u64,
        exit: supd_supervisor::Exit,
    },
    /// The process said something on its notify socket or IPC channel.
    Notice { generation: u64, notice: Notice },
    /// The process tree of a stopped process is empty.
    GroupGone { generation: u64 },
}

/// The actor's state.
pub(super) struct App {
    pub(super) config: Arc<AppConfig>,
    /// The restart policy of `config`.
    pub(super) policy: Policy,
    pub(super) base_env: Env,
    pub(super) records: Vec<Record>,
    pub(super) listener: Option<SlotSockets>,
    /// Where the port's connections go, and what its queues showed.
    pub(super) ports: PortWatch,
    pub(super) reaper: Reaper,
    pub(super) log: AppLog,
    pub(super) events: mpsc::UnboundedSender<Event>,
    /// Where `events` arrive.
    pub(super) inbox: mpsc::UnboundedReceiver<Event>,
    /// The records' timers, by generation.
    pub(super) timers: Timers<(u64, Timer)>,
    /// Open while the processes' notices may be read (see [`readiness::Gate`]).
    pub(super) notices: readiness::Gate,
    view: watch::Sender<AppView>,
    pub(super) trouble: mpsc::UnboundedSender<Trouble>,
    changes: Changes,
    /// The launch waiting on a process to be ready, by generation.
    pub(super) launches: HashMap<u64, oneshot::Sender<Result<u32, String>>>,
    /// The retires waiting on a process's tree to be gone, by generation.
    pub(super) retires: HashMap<u64, Vec<oneshot::Sender<()>>>,
    pub(super) next_generation: u64,
    /// Replies of `Stop`/`Delete`, answered once nothing is stopping.
    after_stop: Vec<(oneshot::Sender<()>, Stop)>,
    deleted: bool,
    /// Copies of each running process's channels, by generation, to hand
    /// them over at an `update` (the originals are read by its watcher).
    pub(super) channels: HashMap<u64, Kept>,
    /// Frozen for an `update`.
    pub(super) frozen: Option<Frozen>,
    /// This step's replies, sent once its view is published.
    pub(super) replies: Replies,
}

impl App {
    /// An actor's state, its handle and its command queue, not running yet.
    pub(super) fn new(
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
            changes,
        } = with;
        let records = instances
            .into_iter()
            .map(|view| Record::from_view(view, config.kill_timeout))
            .collect();
        let app = App {
            ports: PortWatch::new(config.instances),
            policy: Policy::from(&*config),
            config,
            base_env,
            records,
            listener,
            reaper,
            log,
            events: ev_tx,
            inbox: ev_rx,
            timers: Timers::default(),
            notices: readiness::Gate::default(),
            view: view_tx,
            trouble,
            changes,
            launches: HashMap::new(),
            retires: HashMap::new(),
            next_generation,
            after_stop: Vec::new(),
            deleted: false,
            channels: HashMap::new(),
            frozen: None,
            replies: Replies::default(),
        };
        (app, (cmd_tx, view_rx), cmd_rx)
    }

    /// Handles commands, events and timers until the app is deleted.
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while !self.deleted {
            let next_timer = self.timers.next();
            let due = tokio::time::Instant::from_std(next_timer.unwrap_or_else(Instant::now));
            tokio::select! {
                Some(cmd) = commands.recv() => match (&mut self.frozen, cmd) {
                    (Some(_), Command::Thaw(reply)) => {
                        self.thaw().await;
                        self.replies.send(reply, ());
                    }
                    (Some(frozen), cmd) => frozen.commands.push(cmd),
                    (None, cmd) => self.on_command(cmd).await,
                },
                Some(ev) = self.inbox.recv(), if self.frozen.is_none() => self.on_event(ev),
                () = tokio::time::sleep_until(due), if next_timer.is_some() && self.frozen.is_none() => {
                    for (generation, timer) in self.timers.due(Instant::now()) {
                        self.on_timer(generation, timer);
                    }
                }
                else => break,
            }
            self.settle();
            let instances: Vec<Instance> = self.records.iter().map(Record::view).collect();
            self.steer(&instances);
            self.publish(instances);
            self.replies.deliver();
        }
        tracing::info!(app = %self.config.name, "deleted");
    }

    /// Publishes the view, and touches the state file's changes if what it
    /// records (config, processes, stopped or not) changed since the last one.
    fn publish(&self, instances: Vec<Instance>) {
        let recorded_changed = {
            let last = self.view.borrow();
            // The last view holds the old config, so its address is not reused.
            !Arc::ptr_eq(&last.config, &self.config)
                || !Arc::ptr_eq(&last.base_env, &self.base_env)
                || last
                    .instances
                    .iter()
                    .map(Instance::recorded)
                    .ne(instances.iter().map(Instance::recorded))
        };
        self.view.send_replace(AppView {
            config: self.config.clone(),
            base_env: self.base_env.clone(),
            instances,
            host: self.listener.as_ref().map(SlotSockets::host),
            unserved: self.ports.problems(),
        });
        // After the view: a write that sees the touch reads the change.
        if recorded_changed {
            self.changes.touch();
        }
    }

    /// The index of the record of process `generation`.
    pub(super) fn find(&self, generation: u64) -> Option<usize> {
        self.records.iter().position(|r| r.generation == generation)
    }

    pub(super) async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Launch {
                slot,
                kind,
                reason,
                reply,
            } => self.launch(slot, kind, reason, reply),
            Command::Supersede { old, reply } => {
                let superseded = match self.find(old) {
                    Some(i) => {
                        let slot = self.records[i].slot;
                        let successor = self
                            .records
                            .iter()
                            .any(|o| o.slot == slot && o.generation != old && o.state.is_serving());
                        if successor {
                            self.feed(
                                i,
                                Input::Retire {
                                    then: Retire::Remove,
                                },
                            );
                        }
                        successor
                    }
                    // Already gone (crashed and forgotten): nothing to retire.
                    None => true,
                };
                self.replies.send(reply, superseded);
            }
            Command::Retire {
                generation,
                record,
                reply,
            } => match self.find(generation) {
                Some(i) => {
                    self.retires.entry(generation).or_default().push(reply);
                    self.feed(i, Input::Retire { then: record });
                }
                None => self.replies.send(reply, ()),
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
                let routed = self.route(slots);
                self.replies.send(reply, routed);
            }
            Command::LookAtQueues { operations } => self.look_at_queues(&operations),
            Command::Queued { slot, reply } => {
                self.replies
                    .send(reply, self.listener.as_ref().map_or(0, |l| l.queued(slot)));
            }
            Command::Stop(reply) => self.stop_all(reply, Stop::Keep),
            Command::Delete(reply) => self.stop_all(reply, Stop::Delete),
            Command::Signal(sig, reply) => {
                for pid in self.records.iter().filter_map(|r| r.state.pid()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
                }
                self.replies.send(reply, ());
            }
            Command::Flush(reply) => {
                self.replies.send(reply, self.log.truncate().await);
            }
            Command::Reset(reply) => {
                for record in &mut self.records {
                    record.restarts = 0;
                    record.history = RunHistory::default();
                }
                self.replies.send(reply, ());
            }
            Command::Env { slot, reply } => {
                self.replies.send(reply, self.env_of(slot));
            }
            Command::Freeze(reply) => {
                let frozen = self.freeze().await;
                self.replies.send(reply, frozen);
            }
            Command::Thaw(reply) => {
                self.replies.send(reply, ());
            }
        }
    }

    /// Starts a process for `slot`: in a record of that slot with no process
    /// if there is one, else in a new record (beside a live one, during a
    /// reload).
    fn launch(
        &mut self,
        slot: u32,
        kind: Launch,
        reason: Option<String>,
        reply: oneshot::Sender<Result<u32, String>>,
    ) {
        let index = match self
            .records
            .iter()
            .position(|r| r.slot == slot && !r.state.is_live())
        {
            Some(i) => i,
            None => {
                let mut record = Record::new(slot);
                // The slot's newest record carries its count: processes
                // replaced by earlier reloads may still be stopping.
                if let Some(old) = self
                    .records
                    .iter()
                    .filter(|r| r.slot == slot)
                    .max_by_key(|r| r.generation)
                {
                    record.restarts = old.restarts;
                    record.restart_reason = old.restart_reason.clone();
                }
                let at = self
                    .records
                    .iter()
                    .rposition(|r| r.slot <= slot)
                    .map_or(0, |p| p + 1);
                self.records.insert(at, record);
                at
            }
        };
        let record = &mut self.records[index];
        // A user's start or restart is what ends `errored`.
        record.history = RunHistory::default();
        record.last_error = None;
        if kind == Launch::Restart {
            record.restarts += 1;
        }
        if reason.is_some() {
            record.restart_reason = reason;
        }
        // The process the launch spawns gets the next generation.
        self.launches.insert(self.next_generation, reply);
        self.feed(index, Input::Launch);
    }

    /// Stops every record; `reply` once all are down (then the actor ends,
    /// for [`Stop::Delete`]).
    fn stop_all(&mut self, reply: oneshot::Sender<()>, then: Stop) {
        let generations: Vec<u64> = self.records.iter().map(|r| r.generation).collect();
        for generation in generations {
            if let Some(i) = self.find(generation) {
                self.feed(i, Input::Retire { then: Retire::Keep });
            }
        }
        self.after_stop.push((reply, then));
    }

    /// Answers `Stop`/`Delete` once no record is still stopping.
    fn settle(&mut self) {
        let stopping = self
            .records
            .iter()
            .any(|r| r.state.status() == Status::Stopping);
        if self.after_stop.is_empty() || stopping {
            return;
        }
        for (reply, then) in std::mem::take(&mut self.after_stop) {
            self.deleted |= then == Stop::Delete;
            self.replies.send(reply, ());
        }
    }

    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::Exited { generation, exit } => self.on_exit(generation, exit),
            Event::Notice { generation, notice } => self.on_notice(generation, notice),
            Event::GroupGone { generation } => {
                if let Some(i) = self.find(generation) {
                    self.feed(i, Input::GroupGone);
                }
            }
        }
    }

    /// A timer of process `generation` is due.
    fn on_timer(&mut self, generation: u64, timer: Timer) {
        let Some(i) = self.find(generation) else {
            return;
        };
        let input = match timer {
            Timer::ReadyTimeout => Input::ReadyTimeout,
            Timer::RestartDue => Input::RestartDue,
            Timer::KillDue => Input::KillDue,
            Timer::WatchdogDue => Input::WatchdogDue,
        };
        self.feed(i, input);
    }
}
