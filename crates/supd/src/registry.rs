//! The registry: the table of every app known to the daemon, in start order.
//!
//! It registers apps (from a start, a saved list, a handover), arms their
//! triggers (which then follow the app by themselves), finds them by name
//! and forgets them once deleted; it owns what is daemon-wide (settings in
//! force, metrics address, monitor samples, the state file). Requests are
//! answered in [`crate::control`], over this table.
//!
//! It holds one [`AppHandle`] per app in start order, beside the app's
//! [`AppTriggers`], behind a short-lived mutex (never held across an
//! await); all per-app state lives in the app's actor. Those who read the
//! table on their own schedule (monitor, metrics, the triggers' reactor)
//! get a [`Views`] window on it and know nothing of the registry.

mod settings;
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
use crate::image::Image;
use crate::logs::AppLog;
use crate::monitor::{self, Samples};
use crate::ops;
use crate::state::StateFile;
use crate::triggers::{self, AppTriggers, Arming, Emitter};
use crate::views::Views;

/// One app of the table.
struct Entry {
    /// Its actor's handle.
    app: AppHandle,
    /// Its triggers, following it.
    triggers: AppTriggers,
}

/// Every app, in start order.
#[derive(Clone)]
pub struct Registry {
    home: Home,
    reaper: Reaper,
    apps: Arc<Mutex<Vec<Entry>>>,
    samples: Samples,
    /// Where actors report a process that must be replaced.
    trouble: mpsc::UnboundedSender<Trouble>,
    /// What arming a new app's triggers needs.
    arming: Arming,
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
    /// and the triggers' reactor running. The state file is kept from
    /// [`Registry::keep_state`] on.
    pub fn new(home: Home, reaper: Reaper, sample_interval: Duration, image: Image) -> Registry {
        let (trouble, troubles) = mpsc::unbounded_channel();
        let (emitter, emitted) = Emitter::channel();
        let (interval_tx, interval_rx) = watch::channel(sample_interval);
        let registry = Registry {
            home: home.clone(),
            arming: Arming {
                emitter,
                reaper: reaper.clone(),
                home: home.dir().to_path_buf(),
            },
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
            registry.window(),
            registry.trouble.clone(),
            registry.samples.clone(),
            interval_rx,
        ));
        tokio::spawn(triggers::react(emitted, troubles, registry.window()));
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
        self.apps().iter().map(|e| e.app.view()).collect()
    }

    /// Every app's handle, in start order.
    fn handles(&self) -> Vec<AppHandle> {
        self.apps().iter().map(|e| e.app.clone()).collect()
    }

    /// A read-only window on the table, for those who read it on their
    /// own schedule.
    fn window(&self) -> Views {
        let apps = self.apps.clone();
        Views::new(move || {
            let apps = apps.lock().unwrap_or_else(|p| p.into_inner());
            apps.iter().map(|e| e.app.clone()).collect()
        })
    }

    /// Returns once every app's triggers follow its latest view (its files
    /// watched after a start, no longer after a stop): a command that
    /// waits for this before answering holds for what comes after it.
    pub async fn triggers_caught_up(&self) {
        let apps: Vec<(AppHandle, AppTriggers)> = self
            .apps()
            .iter()
            .map(|e| (e.app.clone(), e.triggers.clone()))
            .collect();
        for (app, triggers) in apps {
            triggers.caught_up(&app).await;
        }
    }

    /// The latest problem watching an app's files, for `show`.
    pub fn watch_problem(&self, name: &str) -> Option<String> {
        let apps = self.apps();
        let entry = apps.iter().find(|e| e.app.name == name)?;
        entry.triggers.watch_problem()
    }

    /// The running image, for `ping` and `update`.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The daemon's home.
    pub fn home(&self) -> Home {
        self.home.clone()
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

    fn apps(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a new app's handle to the table, arming its triggers; refused
    /// if another app of that name appeared meanwhile.
    fn insert(&self, app: AppHandle) -> Result<(), String> {
        let mut apps = self.apps();
        if apps.iter().any(|e| e.app.name == app.name) {
            return Err(format!(
                "app \"{}\" is being started by another command",
                app.name
            ));
        }
        let triggers = AppTriggers::arm(&app, &self.arming);
        apps.push(Entry { app, triggers });
        Ok(())
    }

    /// The app named, if the daemon knows it.
    pub fn find(&self, name: &str) -> Option<AppHandle> {
        self.apps()
            .iter()
            .find(|e| e.app.name == name)
            .map(|e| e.app.clone())
    }

    /// The app named; an unknown name is an error naming it.
    pub fn get(&self, name: &str) -> Result<AppHandle, String> {
        self.find(name).ok_or_else(|| unknown(name))
    }

    /// Forgets the apps `deleted` names and any whose actor has ended.
    pub fn forget(&self, deleted: &[String]) {
        self.apps()
            .retain(|e| !deleted.contains(&e.app.name) && !e.app.is_gone());
    }

    /// `all`, or the one app named; an unknown name is an error naming it.
    pub fn resolve(&self, target: &str) -> Result<Vec<AppHandle>, String> {
        if target == "all" {
            return Ok(self.handles());
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
        ops::start(&handle, None).await.map_err(String::from)
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
        self.insert(handle.clone())?;
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
        self.samples.table(&self.views())
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
