//! The registry: the table of every app known to the daemon, in start order.
//!
//! It registers apps (from a start, a saved list, a handover), arms their
//! triggers, finds them by name and forgets them once deleted; it owns what
//! is daemon-wide (settings in force, metrics address, monitor samples, the
//! state file). Requests are answered in [`crate::control`], over this table.
//!
//! It holds one [`AppHandle`] per app in start order behind a short-lived
//! mutex (never held across an await); all per-app state lives in the app's
//! actor.

mod upgrade;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supd_config::{AppConfig, DaemonConfig};
use supd_proto::{Home, Outcome, ProcessInfo, StartOutcome};
use supd_supervisor::Reaper;
use tokio::sync::{mpsc, watch};

use crate::app::{AppHandle, AppView, Env, SharedEnvs, Surroundings, Trouble, spawn_actor};
use crate::dump::SavedApp;
use crate::logs::AppLog;
use crate::metrics;
use crate::monitor::{self, Samples};
use crate::ops;
use crate::state::StateFile;
use crate::update::Image;

/// Every app, in start order.
#[derive(Clone)]
pub struct Registry {
    home: Home,
    reaper: Reaper,
    apps: Arc<Mutex<Vec<AppHandle>>>,
    samples: Samples,
    trouble: mpsc::UnboundedSender<Trouble>,
    sample_interval: Arc<watch::Sender<Duration>>,
    /// Where metrics are served, once asked for.
    metrics: Arc<tokio::sync::Mutex<Option<SocketAddr>>>,
    /// The latest `[daemon]` settings: log rotation defaults for new configs.
    daemon: Arc<Mutex<DaemonConfig>>,
    /// The running image, for `ping` and `update`.
    image: Arc<Image>,
    /// Set while an `update` hands the apps over: no new app may appear.
    updating: Arc<std::sync::atomic::AtomicBool>,
    /// What a daemon that dies leaves for the next one.
    state: StateFile,
}

impl Registry {
    /// An empty registry, with its monitor sampling every `sample_interval`
    /// and its trouble handler running. The state file is kept from
    /// [`Registry::keep_state`] on.
    pub fn new(home: Home, reaper: Reaper, sample_interval: Duration, image: Image) -> Registry {
        let (trouble, troubles) = mpsc::unbounded_channel();
        let (interval_tx, interval_rx) = watch::channel(sample_interval);
        let registry = Registry {
            home: home.clone(),
            reaper,
            apps: Arc::default(),
            samples: Samples::default(),
            trouble,
            sample_interval: Arc::new(interval_tx),
            metrics: Arc::default(),
            daemon: Arc::default(),
            image: Arc::new(image),
            updating: Arc::default(),
            state: StateFile::new(&home),
        };
        tokio::spawn(monitor::run(
            registry.clone(),
            registry.samples.clone(),
            interval_rx,
        ));
        tokio::spawn(handle_troubles(registry.clone(), troubles));
        let views = registry.clone();
        tokio::spawn(registry.state.clone().keep(move || views.views()));
        registry
    }

    /// Starts keeping the state file (once whatever a dead daemon left has
    /// been dealt with).
    pub async fn keep_state(&self) {
        self.state.begin().await;
        // A failure is logged, and retried at the next change.
        let _ = self.persist().await;
    }

    /// A clean stop: the state file goes (it stays if an app is left).
    pub async fn end_state(&self) {
        self.state.end(self.views()).await;
    }

    /// Writes the state file from the apps' published views, asking no
    /// actor: an actor publishes a step's view before it sends the step's
    /// replies (see [`crate::replies`]), so once a request's last reply has
    /// arrived, the views show every change it made.
    pub async fn persist(&self) -> Result<(), String> {
        self.state.write(|| self.views()).await
    }

    /// The daemon's spawner and reaper.
    pub fn reaper(&self) -> Reaper {
        self.reaper.clone()
    }

    /// The current view of every app.
    pub fn views(&self) -> Vec<AppView> {
        self.apps().iter().map(|a| a.view()).collect()
    }

    /// Has every app with a port look at its accept queues (a monitor
    /// sample; see [`crate::unserved`]). Apps without one are not asked.
    pub fn look_at_queues(&self) {
        for app in self.apps().iter() {
            app.look_at_queues();
        }
    }

    /// Asks for a process to be replaced.
    pub fn report(&self, trouble: Trouble) {
        let _ = self.trouble.send(trouble);
    }

    /// The running image, for `ping` and `update`.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The daemon's home.
    pub fn home(&self) -> Home {
        self.home.clone()
    }

    /// The latest `[daemon]` settings.
    pub fn daemon_config(&self) -> DaemonConfig {
        self.daemon
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The sampling interval in force.
    pub fn sample_interval(&self) -> Duration {
        *self.sample_interval.borrow()
    }

    /// Where metrics are served, if anywhere.
    pub async fn metrics_address(&self) -> Option<SocketAddr> {
        *self.metrics.lock().await
    }

    /// What a new actor works with, around its log.
    fn surroundings(&self, log: AppLog) -> Surroundings {
        Surroundings {
            reaper: self.reaper.clone(),
            log,
            trouble: self.trouble.clone(),
            changes: self.state.changes(),
        }
    }

    /// Applies the `[daemon]` settings an ecosystem file wrote (a file that
    /// does not set `sample_interval` leaves the daemon's own flag alone).
    pub async fn apply_daemon(&self, daemon: &DaemonConfig) -> Result<(), String> {
        *self.daemon.lock().unwrap_or_else(|p| p.into_inner()) = daemon.clone();
        if daemon.is_written("sample_interval") {
            self.sample_interval.send_if_modified(|current| {
                let changed = *current != daemon.sample_interval;
                *current = daemon.sample_interval;
                changed
            });
        }
        match daemon.metrics {
            Some(addr) => self.serve_metrics(addr).await,
            None => Ok(()),
        }
    }

    /// Fills the log-rotation keys an app left unset from `[daemon]`.
    pub fn with_log_defaults(&self, mut config: AppConfig) -> AppConfig {
        let d = self
            .daemon
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        config.log_max_size = config.log_max_size.or(d.log_max_size);
        config.log_retain = config.log_retain.or(Some(d.log_retain));
        config.log_compress = config.log_compress.or(Some(d.log_compress));
        config.log_rotate_interval = config.log_rotate_interval.or(d.log_rotate_interval);
        config
    }

    /// Starts serving metrics at `addr` (once: a daemon serves one address).
    pub async fn serve_metrics(&self, addr: SocketAddr) -> Result<(), String> {
        let mut current = self.metrics.lock().await;
        match *current {
            Some(serving) if serving == addr => Ok(()),
            Some(serving) => {
                tracing::warn!(%serving, %addr, "metrics are already served; restart the daemon to move them");
                Ok(())
            }
            None => {
                metrics::serve(addr, self.clone())
                    .await
                    .map_err(|e| format!("cannot serve metrics at {addr}: {e}"))?;
                *current = Some(addr);
                Ok(())
            }
        }
    }

    /// Re-arms an app's timers (cron restart, health check) and its
    /// watcher from its config; returns once its files are watched.
    pub async fn arm(&self, app: &AppHandle) {
        self.arm_timers(app);
        self.watch(app).await;
    }

    /// Re-arms an app's timers (cron restart, health check).
    fn arm_timers(&self, app: &AppHandle) {
        app.schedule.arm(app);
        app.checker.arm(app, self);
    }

    /// Watches an app's files again after a start, restart or reload (a
    /// `stop` ended it); returns once they are.
    pub async fn watch(&self, app: &AppHandle) {
        app.watcher.arm(app, self.home.dir()).await;
    }

    fn apps(&self) -> std::sync::MutexGuard<'_, Vec<AppHandle>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The app named, if the daemon knows it.
    pub fn find(&self, name: &str) -> Option<AppHandle> {
        self.apps().iter().find(|a| a.name == name).cloned()
    }

    /// The app named; an unknown name is an error naming it.
    pub fn get(&self, name: &str) -> Result<AppHandle, String> {
        self.find(name).ok_or_else(|| unknown(name))
    }

    /// Forgets the apps `deleted` names and any whose actor has ended.
    pub fn forget(&self, deleted: &[String]) {
        self.apps()
            .retain(|a| !deleted.contains(&a.name) && !a.is_gone());
    }

    /// `all`, or the one app named; an unknown name is an error naming it.
    pub fn resolve(&self, target: &str) -> Result<Vec<AppHandle>, String> {
        if target == "all" {
            return Ok(self.apps().clone());
        }
        self.get(target).map(|a| vec![a])
    }

    /// Brings back saved apps, one after the other: apps already known are
    /// left alone, saved-as-stopped apps are registered without starting.
    /// An app listens on the sockets `taken` holds for it, if any.
    pub async fn restore(
        &self,
        apps: Vec<SavedApp>,
        mut taken: HashMap<String, Vec<OwnedFd>>,
    ) -> Vec<StartOutcome> {
        let mut outcomes = Vec::new();
        let mut envs = SharedEnvs::default();
        for saved in apps {
            let name = saved.config.name.clone();
            let sockets = taken.remove(&name).unwrap_or_default();
            let result = if self.find(&name).is_some() {
                Ok(Outcome::AlreadyOnline)
            } else if saved.stopped {
                self.register(saved.config, envs.share(saved.base_env), sockets)
                    .map(|_| Outcome::Stopped)
            } else {
                self.add(saved.config, envs.share(saved.base_env), sockets)
                    .await
            };
            outcomes.push(StartOutcome::of(name, result));
        }
        outcomes
    }

    /// Registers a new app and starts it (on the `taken` sockets, if any).
    pub async fn add(
        &self,
        config: AppConfig,
        base_env: Env,
        taken: Vec<OwnedFd>,
    ) -> Result<Outcome, String> {
        let handle = self.register(config, base_env, taken)?;
        let outcome = ops::start(&handle, None).await;
        self.arm(&handle).await;
        outcome
    }

    /// Creates the actor of a new app, without starting anything.
    fn register(
        &self,
        config: AppConfig,
        base_env: Env,
        taken: Vec<OwnedFd>,
    ) -> Result<AppHandle, String> {
        if self.updating.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!(
                "app \"{}\": supd is updating itself; try again in a moment",
                config.name
            ));
        }
        self.port_taken(config.port, &config.name)?;
        config
            .validate()
            .map_err(|e| format!("app \"{}\": {e}", config.name))?;
        crate::pid_file::check(&config).map_err(|e| format!("app \"{}\": {e}", config.name))?;
        let name = config.name.clone();
        let log = AppLog::open(&self.home, &config)
            .map_err(|e| format!("app \"{name}\": cannot open log files: {e}"))?;
        let log_problem = log.problem();
        let actor = spawn_actor(config, base_env, taken, self.surroundings(log))?;
        let handle = AppHandle::new(name, actor, log_problem);
        let mut apps = self.apps();
        if apps.iter().any(|a| a.name == handle.name) {
            return Err(format!(
                "app \"{}\" is being started by another command",
                handle.name
            ));
        }
        apps.push(handle.clone());
        Ok(handle)
    }

    /// The other app already using `port`, if any: two apps on one port
    /// would share its connections.
    pub fn port_taken(&self, port: Option<u16>, name: &str) -> Result<(), String> {
        let Some(port) = port else { return Ok(()) };
        match self
            .views()
            .iter()
            .find(|v| v.config.port == Some(port) && v.config.name != name)
        {
            Some(other) => Err(format!(
                "app \"{name}\": port {port} is already used by app \"{}\"",
                other.config.name
            )),
            None => Ok(()),
        }
    }
    /// The process table, as `list` shows it.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        self.views()
            .iter()
            .flat_map(|v| self.process_rows(v))
            .collect()
    }

    /// The `list` rows of one app, with the latest usage samples.
    pub fn process_rows(&self, view: &AppView) -> Vec<ProcessInfo> {
        self.samples.rows(view)
    }
}

/// The error naming an app the daemon does not know.
fn unknown(name: &str) -> String {
    format!("unknown app \"{name}\" (see supctl list)")
}

/// Replaces each reported process, one task per report (each waits for its
/// app's operation lock, so reports never interleave with a reload).
async fn handle_troubles(registry: Registry, mut troubles: mpsc::UnboundedReceiver<Trouble>) {
    while let Some(trouble) = troubles.recv().await {
        let Some(app) = registry.find(&trouble.app) else {
            continue;
        };
        tokio::spawn(async move {
            if let Err(e) = ops::replace(&app, trouble.generation, &trouble.reason).await {
                tracing::error!(app = %trouble.app, "replacing a process failed: {e}");
            }
        });
    }
}
