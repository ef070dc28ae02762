//! The app actor: one task per app owns its instances and runs their lifecycle.
//!
//! Commands and events from children (exits, readiness) arrive on two
//! channels and timers come due in one queue ([`timers`]); the task handles
//! one at a time, so no state is shared and no lock is held across an await.
//! What happens to one process record is decided by the pure
//! [`lifecycle::step`] (read its table first); the actor ([`actor`]) runs the
//! effects it names. After each step it publishes an [`AppView`] on a
//! `watch` channel: `list` reads that and never waits behind a graceful
//! stop. The step's replies go out after that publish (see
//! [`crate::replies`]), so whoever is answered already sees the change in
//! the view; the state file is written from the views alone.
//!
//! The actor offers primitives — launch one slot, retire one process, stop
//! all — and applies the restart policy to crashes by itself. Multi-step
//! operations (start, restart, reload, scale) are sequenced on top of these
//! by [`crate::ops`].

mod actor;
mod effects;
mod error;
mod freeze;
mod handle;
pub mod lifecycle;
mod listen;
mod ports;
mod record;
mod spawn;
mod timers;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use supd_config::AppConfig;
use supd_supervisor::{Exit, Reaper};
use tokio::sync::{mpsc, oneshot, watch};

use crate::changes::Changes;
use crate::handover::{self, FrozenApp};
use crate::instance::Instance;
use crate::listeners::SlotSockets;
use crate::logs::AppLog;
pub use error::AppError;
pub use handle::{AppHandle, Trouble};
pub use lifecycle::Retire;

/// How long to keep polling a process group after SIGKILL before giving up
/// on it (a process in uninterruptible sleep can outlive any signal).
pub const KILL_GRACE: Duration = Duration::from_secs(5);

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

/// What a stop of every instance leaves of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The app stays known, stopped (`stop`, `kill`).
    Keep,
    /// The actor ends once all are down and the app is forgotten (`delete`).
    Delete,
}

/// What an actor works with besides its own records.
pub struct Surroundings {
    /// The daemon's spawner and reaper.
    pub reaper: Reaper,
    /// The app's log files.
    pub log: AppLog,
    /// Where processes to replace are reported.
    pub trouble: mpsc::UnboundedSender<Trouble>,
    /// Touched whenever what a restarted daemon would need changes.
    pub changes: Changes,
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
    let listener = listen::bind(&config, taken, None)?;
    // Every slot exists from the start, stopped, so `list` shows an app
    // that is registered but not running (a resurrected stopped app).
    let instances: Vec<Instance> = (0..config.instances).map(Instance::new).collect();
    let (app, actor, commands) = actor::App::new(config, base_env, instances, listener, 1, with);
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
        actor::App::new(config, base_env, instances, listener, next_generation, with);
    app.adopt(processes, exits);
    tokio::spawn(app.run(commands));
    actor
}

#[cfg(test)]
mod tests {
    use super::*;

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
