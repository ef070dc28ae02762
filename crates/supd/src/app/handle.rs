//! The client of one app's actor: what ops, triggers and the dispatcher hold.
//!
//! It lives beside the actor (not in the registry that owns the table of
//! apps), so everything that acts on an app depends downward on this
//! module. A handle sends [`Command`]s and reads the published [`AppView`];
//! it also holds the app's operation guard (one multi-step operation at a
//! time, preempted by a stop). Triggers are not its concern: they follow
//! the published view ([`AppHandle::subscribe`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use supd_config::AppConfig;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Actor, AppError, AppView, Command, Env, Launch, Retire, Stop};

/// The daemon's handle on one app's actor.
#[derive(Clone)]
pub struct AppHandle {
    /// The app's name, as in its config (which cannot rename it).
    pub name: String,
    commands: mpsc::UnboundedSender<Command>,
    view: watch::Receiver<AppView>,
    /// Held by the one multi-step operation (start, reload, scale…) running.
    pub op: Arc<tokio::sync::Mutex<()>>,
    /// How many stops, deletes and kills have begun (see [`AppHandle::halt`]).
    halts: Arc<AtomicU64>,
    /// The count of `halts` when the operation holding `op` asked for it:
    /// once they differ, a stop came after it, and it launches nothing more
    /// (nor does an operation that was queued behind it).
    asked_at: Arc<AtomicU64>,
    /// A problem writing the app's log files (disk full…), set by its writer.
    log_problem: Arc<Mutex<Option<String>>>,
}

impl AppHandle {
    /// The handle of a new actor.
    pub fn new(
        name: String,
        (commands, view): Actor,
        log_problem: Arc<Mutex<Option<String>>>,
    ) -> AppHandle {
        AppHandle {
            name,
            commands,
            view,
            op: Arc::default(),
            halts: Arc::default(),
            asked_at: Arc::default(),
            log_problem,
        }
    }
}

impl AppHandle {
    /// Sends a command built around a fresh reply channel and awaits the
    /// reply; an error if the actor is gone (the app is being deleted).
    pub async fn ask<T>(
        self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, AppError> {
        let (tx, rx) = oneshot::channel();
        let gone = || AppError::Gone {
            app: self.name.clone(),
        };
        self.commands.send(make(tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// The latest published view.
    pub fn view(&self) -> AppView {
        self.view.borrow().clone()
    }

    /// The published views from now on, for whoever follows them (the
    /// triggers); closed once the actor has ended.
    pub fn subscribe(&self) -> watch::Receiver<AppView> {
        self.view.clone()
    }

    /// Whether the actor has ended (the app was deleted): the table then
    /// forgets it.
    pub fn is_gone(&self) -> bool {
        self.commands.is_closed()
    }

    /// The latest problem writing the app's log files, for `show`.
    pub fn log_problem(&self) -> Option<String> {
        self.log_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Has the actor look at its accept queues (a monitor sample; see
    /// [`crate::unserved`]), if the app has a port.
    pub fn look_at_queues(&self) {
        if self.view.borrow().config.port.is_some() {
            let operations = self.op.clone();
            let _ = self.commands.send(Command::LookAtQueues { operations });
        }
    }

    /// Takes the operation lock for a multi-step operation. A stop that
    /// begins while it waits for the lock, or while it runs, preempts it.
    pub async fn begin(&self) -> tokio::sync::MutexGuard<'_, ()> {
        let asked_at = self.halts.load(Ordering::SeqCst);
        let guard = self.op.lock().await;
        self.asked_at.store(asked_at, Ordering::SeqCst);
        guard
    }

    /// Refuses a launch once a stop, delete or kill has preempted the
    /// operation asking for it.
    fn not_preempted(&self) -> Result<(), AppError> {
        if self.halts.load(Ordering::SeqCst) != self.asked_at.load(Ordering::SeqCst) {
            Err(AppError::Preempted {
                app: self.name.clone(),
            })
        } else {
            Ok(())
        }
    }

    /// Starts a process for `slot`; its pid once online.
    pub async fn launch(&self, slot: u32, kind: Launch) -> Result<u32, AppError> {
        self.not_preempted()?;
        self.clone()
            .ask(|reply| Command::Launch {
                slot,
                kind,
                reason: None,
                reply,
            })
            .await?
            .map_err(AppError::from)
    }

    /// Starts a replacement process for `slot`, recording why.
    pub async fn launch_because(&self, slot: u32, reason: &str) -> Result<u32, AppError> {
        self.not_preempted()?;
        let reason = Some(reason.to_string());
        self.clone()
            .ask(|reply| Command::Launch {
                slot,
                kind: Launch::Restart,
                reason,
                reply,
            })
            .await?
            .map_err(AppError::from)
    }

    /// Stops one process gracefully, then keeps or forgets its `record`.
    pub async fn retire(&self, generation: u64, record: Retire) {
        let _ = self
            .clone()
            .ask(|reply| Command::Retire {
                generation,
                record,
                reply,
            })
            .await;
    }

    /// Retires `old` if another process of its slot is starting or serving;
    /// `false` (and `old` untouched) if not.
    pub async fn supersede(&self, old: u64) -> bool {
        self.clone()
            .ask(|reply| Command::Supersede { old, reply })
            .await
            .unwrap_or(false)
    }

    /// Replaces the config new processes get.
    pub async fn configure(
        &self,
        config: AppConfig,
        base_env: Option<Env>,
    ) -> Result<(), AppError> {
        let config = Box::new(config);
        self.clone()
            .ask(|reply| Command::Configure {
                config,
                base_env,
                reply,
            })
            .await?
            .map_err(AppError::from)
    }

    /// Steers new connections to slots `0..slots`; closes unused higher sockets.
    pub async fn route(&self, slots: u32) -> Result<(), AppError> {
        self.clone()
            .ask(|reply| Command::Route { slots, reply })
            .await?
            .map_err(AppError::from)
    }

    /// Connections waiting in the accept queue of `slot`.
    pub async fn queued(&self, slot: u32) -> u32 {
        self.clone()
            .ask(|reply| Command::Queued { slot, reply })
            .await
            .unwrap_or(0)
    }

    /// Graceful stop of every instance.
    pub async fn stop(&self) -> Result<(), AppError> {
        self.clone().ask(Command::Stop).await
    }

    /// `stop`, `delete` and `kill`: preempts any operation in progress
    /// instead of waiting for it (a start waiting for readiness could take
    /// `listen_timeout`). The actor stops every instance at once (a pending
    /// launch is answered "stopped before it was ready") and the operation
    /// launches nothing more; once it has let go of the lock, a second stop
    /// catches anything it launched meanwhile, and the app is deleted for
    /// [`Stop::Delete`].
    pub async fn halt(&self, then: Stop) -> Result<(), AppError> {
        self.halts.fetch_add(1, Ordering::SeqCst);
        let first = self.stop().await;
        let _op = self.op.lock().await;
        let result = if then == Stop::Delete {
            self.clone().ask(Command::Delete).await
        } else {
            self.stop().await
        };
        first.and(result)
    }
}

/// A process that must be replaced (memory limit, failed health check,
/// silent watchdog), as reported by whoever noticed.
#[derive(Debug, Clone)]
pub struct Trouble {
    /// The app.
    pub app: String,
    /// The process, by generation.
    pub generation: u64,
    /// Why, for `show` and the daemon log.
    pub reason: String,
}
