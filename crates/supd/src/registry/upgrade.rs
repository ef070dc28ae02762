//! The table's side of `supd update`: holding every app still, describing
//! and freezing them for the new image, thawing them if it does not take
//! over, and registering the apps a previous image handed over.
//!
//! Kept apart from the table proper because only [`crate::update`] uses it.

use std::collections::HashMap;

use supd_supervisor::Exit;
use tokio::sync::oneshot;

use super::Registry;
use crate::app::{AppHandle, Command, SharedEnvs, resume_actor};
use crate::handover::{self, FrozenApp};
use crate::logs::AppLog;

impl Registry {
    /// Marks an update under way (`true`: no app may be added) or over.
    pub fn set_updating(&self, updating: bool) {
        self.updating
            .store(updating, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits for every app's operation in progress and holds them all
    /// (dropping the guards lets operations run again).
    pub async fn lock_operations(&self) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut guards = Vec::new();
        for app in self.handles() {
            guards.push(app.op.clone().lock_owned().await);
        }
        guards
    }

    /// The apps as a handover would describe them, without freezing
    /// anything or naming descriptors: what `update` asks the new binary
    /// to read.
    pub fn describe(&self) -> Vec<FrozenApp> {
        self.views()
            .into_iter()
            .map(|v| FrozenApp {
                config: (*v.config).clone(),
                base_env: (*v.base_env).clone(),
                instances: v.instances,
                next_generation: 0,
                sockets: Vec::new(),
                processes: Vec::new(),
                pipes: Vec::new(),
            })
            .collect()
    }

    /// Freezes every app for the handover (see [`Command::Freeze`]).
    pub async fn freeze(&self) -> Vec<FrozenApp> {
        let mut frozen = Vec::new();
        for app in self.handles() {
            if let Ok(app) = app.ask(Command::Freeze).await {
                frozen.push(app);
            }
        }
        frozen
    }

    /// Lets every app act again after a handover that did not happen.
    pub async fn thaw(&self) {
        for app in self.handles() {
            let _ = app.ask(Command::Thaw).await;
        }
    }

    /// Registers an app handed over by the previous image, with its running
    /// processes (their exits on `exits`, by pid) and log pipes; equal
    /// environments are shared through `envs`.
    pub fn resume_app(
        &self,
        mut frozen: FrozenApp,
        exits: &mut HashMap<u32, oneshot::Receiver<Exit>>,
        envs: &mut SharedEnvs,
    ) -> Result<(), String> {
        let name = frozen.config.name.clone();
        let mut log = AppLog::open(&self.home, &frozen.config)
            .map_err(|e| format!("app \"{name}\": cannot open log files: {e}"))?;
        let pipes = std::mem::take(&mut frozen.pipes);
        for pipe in pipes {
            // SAFETY: this pipe's descriptor in the handover, taken once.
            let fd = unsafe { handover::take(pipe.fd) };
            log.resume(pipe, fd, frozen.config.log_date_format.clone());
        }
        let log_problem = log.problem();
        let actor = resume_actor(frozen, exits, envs, self.surroundings(log));
        // Its triggers follow it from now on; nobody waits for its watch.
        self.insert(AppHandle::new(name, actor, log_problem))
    }
}
