//! The words of the lifecycle: the states (with their data), the inputs,
//! the facts a rule may look at and the effects it asks for, and the bare
//! names of states and inputs the transition table is written in.

use std::time::{Duration, Instant};

use supd_proto::Status;
use supd_supervisor::{Exit, Policy, RunHistory};

use crate::instance;

/// Where one record is in its lifecycle, with what that state needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No process, by choice (or never started).
    Stopped,
    /// Spawned, not ready yet.
    Launching {
        /// The process (also its group id).
        pid: u32,
        /// Whether a launch waits for it to be ready (a user's start, not
        /// an automatic restart).
        awaited: bool,
    },
    /// Running (ready, when the readiness waits).
    Online {
        /// The process (also its group id).
        pid: u32,
        /// Counted online at `listen_timeout` without saying it was ready
        /// (see `Readiness::fails_on_timeout`); its late word clears that.
        late: bool,
    },
    /// Exited (or could not spawn for lack of a resource); a timer restarts it.
    WaitingRestart,
    /// Asked to stop gracefully; its process still runs.
    Stopping {
        /// The process (also its group id).
        pid: u32,
        /// When SIGKILL goes to its tree.
        kill_at: Instant,
        /// What becomes of the record once its tree is gone.
        then: Retire,
        /// Whether SIGKILL was sent already.
        killed: bool,
    },
    /// Stopping, its main process reaped: what is left of its tree drains.
    Draining {
        /// When SIGKILL goes to what is left.
        kill_at: Instant,
        /// What becomes of the record once its tree is gone.
        then: Retire,
    },
    /// Given up on: could not start, or too many unstable restarts.
    Errored,
}

/// What becomes of a retired process's record once its tree is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Retire {
    /// It stays, stopped, so the slot's next process inherits its restart
    /// count (a stop-first swap, `stop`).
    Keep,
    /// It is forgotten (a reload's old process, a slot scaled away).
    Remove,
}

/// Something that happens to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A process is asked for (start, restart, reload).
    Launch,
    /// The process asked for runs.
    Spawned {
        /// Its pid.
        pid: u32,
    },
    /// The process asked for could not be started.
    SpawnFailed {
        /// For lack of a resource that may come back (descriptors, disk).
        transient: bool,
    },
    /// The process said it is ready.
    Ready,
    /// `listen_timeout` is over.
    ReadyTimeout,
    /// The main process ended.
    Exited {
        /// How.
        exit: Exit,
        /// After how long.
        uptime: Duration,
    },
    /// A restart delay is over.
    RestartDue,
    /// Stop the process gracefully.
    Retire {
        /// What becomes of the record afterwards.
        then: Retire,
    },
    /// `kill_timeout` is over during a stop.
    KillDue,
    /// The whole tree of a stopped process is gone.
    GroupGone,
    /// Time to look at the watchdog keep-alives.
    WatchdogDue,
}

/// What a rule needs to know beyond the record's state.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// Now.
    pub now: Instant,
    /// Whether a launch reply waits on the process being spawned.
    pub awaited: bool,
    /// Whether the readiness waits for a word from the process.
    pub waits: bool,
    /// Whether a process not ready at `listen_timeout` failed (else it is
    /// counted online, late).
    pub fails_on_timeout: bool,
    /// The app's `kill_timeout`.
    pub kill_timeout: Duration,
    /// The app's `listen_timeout`.
    pub listen_timeout: Duration,
    /// The app's watchdog period, if any.
    pub watchdog: Option<Duration>,
    /// How long since the process's last keep-alive.
    pub silent: Duration,
    /// Another record of the slot is active (a reload's other process).
    pub other_active: bool,
    /// Another record of the slot serves or is starting: it takes over.
    pub other_serving: bool,
    /// The restart policy.
    pub policy: &'a Policy,
    /// The record's unstable-run history, for the policy.
    pub history: RunHistory,
    /// Spawns in a row that failed for lack of a resource.
    pub spawn_failures: u32,
}

/// Why a launch failed or a record is errored (the actor words it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The spawn failed; retried after the delay, if any.
    Spawn {
        /// When it is retried.
        retry_in: Option<Duration>,
    },
    /// Not ready within `listen_timeout`.
    NotReady,
    /// Exited before it was ready.
    ExitedEarly(Exit),
    /// The restart policy gave up.
    Policy(String),
}

/// A timer the actor arms for this record's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// `listen_timeout`.
    ReadyTimeout,
    /// A restart delay.
    RestartDue,
    /// `kill_timeout` during a stop.
    KillDue,
    /// The next watchdog look.
    WatchdogDue,
}

/// What the actor does after a step, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Start a process for the record (then feed `Spawned`/`SpawnFailed`).
    Spawn,
    /// Count a restart of the slot.
    CountRestart,
    /// Count a spawn that failed for lack of a resource.
    CountSpawnFailure,
    /// Keep the policy's updated history.
    History(RunHistory),
    /// Arm a timer.
    Arm(Timer, Duration),
    /// The `kill_signal` to the process's tree (remembered for the kill).
    SignalTree(u32),
    /// SIGKILL to the process group.
    KillGroup(u32),
    /// SIGKILL to the process's tree, as it is now.
    KillTree(u32),
    /// Wait for the tree of the reaped process `pid` to be gone (SIGKILL at
    /// `until`), then feed `GroupGone`.
    Drain {
        /// The reaped process.
        pid: u32,
        /// When SIGKILL goes to what is left.
        until: Instant,
    },
    /// Answer the launch waiting on this process: ready, with its pid.
    Answer(u32),
    /// Record the error, log it, and answer a waiting launch with it.
    Fail(Why),
    /// Record the error and warn (nobody waits).
    Warn(Why),
    /// Counted online late: say why in the status text.
    Late,
    /// The late word came: clear the status text.
    ClearLate,
    /// Count becoming online as a keep-alive, and watch for the next ones.
    Keepalive,
    /// Report the process for replacement (watchdog).
    Report(String),
    /// The tree is gone: answer who waits on the stop, forget the record
    /// if asked.
    Gone(Retire),
    /// Forget the record now.
    Forget,
}

impl State {
    /// The status `list` shows.
    pub fn status(&self) -> Status {
        match self {
            State::Stopped => Status::Stopped,
            State::Launching { .. } => Status::Launching,
            State::Online { .. } => Status::Online,
            State::WaitingRestart => Status::WaitingRestart,
            State::Stopping { .. } | State::Draining { .. } => Status::Stopping,
            State::Errored => Status::Errored,
        }
    }

    /// See [`instance::active`].
    pub fn is_active(&self) -> bool {
        instance::active(self.status())
    }

    /// See [`instance::live`].
    pub fn is_live(&self) -> bool {
        instance::live(self.status())
    }

    /// See [`instance::serving`].
    pub fn is_serving(&self) -> bool {
        instance::serving(self.status())
    }

    /// The running process, if any.
    pub fn pid(&self) -> Option<u32> {
        match *self {
            State::Launching { pid, .. }
            | State::Online { pid, .. }
            | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// The state's name, as in [`TABLE`].
    pub fn kind(&self) -> Kind {
        match self {
            State::Stopped => Kind::Stopped,
            State::Launching { .. } => Kind::Launching,
            State::Online { .. } => Kind::Online,
            State::WaitingRestart => Kind::WaitingRestart,
            State::Stopping { .. } => Kind::Stopping,
            State::Draining { .. } => Kind::Draining,
            State::Errored => Kind::Errored,
        }
    }
}

/// A state's name, without its data (a row of [`TABLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stopped,
    Launching,
    Online,
    WaitingRestart,
    Stopping,
    Draining,
    Errored,
}

/// An input's name, without its data (a row of [`TABLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Launch,
    Spawned,
    SpawnFailed,
    Ready,
    ReadyTimeout,
    Exited,
    RestartDue,
    Retire,
    KillDue,
    GroupGone,
    WatchdogDue,
}

impl Input {
    /// The input's name, as in [`TABLE`].
    pub fn on(&self) -> On {
        match self {
            Input::Launch => On::Launch,
            Input::Spawned { .. } => On::Spawned,
            Input::SpawnFailed { .. } => On::SpawnFailed,
            Input::Ready => On::Ready,
            Input::ReadyTimeout => On::ReadyTimeout,
            Input::Exited { .. } => On::Exited,
            Input::RestartDue => On::RestartDue,
            Input::Retire { .. } => On::Retire,
            Input::KillDue => On::KillDue,
            Input::GroupGone => On::GroupGone,
            Input::WatchdogDue => On::WatchdogDue,
        }
    }
}
