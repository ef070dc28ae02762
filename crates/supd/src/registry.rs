//! The registry: every app known to the daemon, and the request handlers.
//!
//! It holds one [`AppHandle`] per app in start order behind a short-lived
//! mutex (never held across an await); all per-app state lives in the app's
//! actor.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supd_config::{AppConfig, DaemonConfig};
use supd_proto::{
    AppDetail, AppLogs, Home, Outcome, ProcessInfo, Request, Response, StartOutcome, Status,
};
use supd_supervisor::Reaper;
use supd_supervisor::group::parse_signal;
use supd_supervisor::spawn::check_program;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::app::{
    Actor, AppView, Command, Env, SharedEnvs, Surroundings, resume_actor, spawn_actor,
};
use crate::cron;
use crate::dump::{self, SavedApp};
use crate::handover::{self, FrozenApp};
use crate::health;
use crate::logs::{self, AppLog};
use crate::metrics;
use crate::monitor::{self, Samples};
use crate::ops::{self, Progress};
use crate::state::StateFile;
use crate::update::{self, Image};
use crate::watcher::Watcher;

/// The daemon's handle on one app's actor.
#[derive(Clone)]
pub struct AppHandle {
    name: String,
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
    /// The `cron_restart` timer.
    schedule: cron::Schedule,
    /// The `health_check` loop.
    checker: health::Checker,
    /// The `watch` watcher.
    watcher: Watcher,
    /// A problem writing the app's log files (disk full…), set by its writer.
    log_problem: Arc<Mutex<Option<String>>>,
}

impl AppHandle {
    /// The handle of a new actor, its timers not armed yet.
    fn new(
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
            schedule: cron::Schedule::default(),
            checker: health::Checker::default(),
            watcher: Watcher::default(),
            log_problem,
        }
    }

    /// Re-arms the app's timers (cron restart, health check) and its
    /// watcher from its config; returns once its files are watched.
    async fn arm(&self, registry: &Registry) {
        self.arm_timers(registry);
        self.watch(registry).await;
    }

    /// Re-arms the app's timers (cron restart, health check).
    fn arm_timers(&self, registry: &Registry) {
        self.schedule.arm(self);
        self.checker.arm(self, registry);
    }

    /// Watches the app's files again after a start, restart or reload (a
    /// `stop` ended it); returns once they are.
    async fn watch(&self, registry: &Registry) {
        self.watcher.arm(self, registry.home.dir()).await;
    }

    /// Stops the app's timers and its watcher.
    fn disarm(&self) {
        self.schedule.disarm();
        self.checker.disarm();
        self.watcher.disarm();
    }
}

impl AppHandle {
    /// Sends a command built around a fresh reply channel and awaits the reply.
    async fn ask<T>(self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        let gone = || format!("app \"{}\" is being deleted", self.name);
        self.commands.send(make(tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// The latest published view.
    pub fn view(&self) -> AppView {
        self.view.borrow().clone()
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
    fn not_preempted(&self) -> Result<(), String> {
        if self.halts.load(Ordering::SeqCst) != self.asked_at.load(Ordering::SeqCst) {
            Err(format!("app \"{}\": stopped while starting", self.name))
        } else {
            Ok(())
        }
    }

    /// Starts a process for `slot`; its pid once online.
    pub async fn launch(&self, slot: u32, restart: bool) -> Result<u32, String> {
        self.not_preempted()?;
        self.clone()
            .ask(|reply| Command::Launch {
                slot,
                restart,
                reason: None,
                reply,
            })
            .await?
    }

    /// Starts a replacement process for `slot`, recording why.
    pub async fn launch_because(&self, slot: u32, reason: &str) -> Result<u32, String> {
        self.not_preempted()?;
        let reason = Some(reason.to_string());
        self.clone()
            .ask(|reply| Command::Launch {
                slot,
                restart: true,
                reason,
                reply,
            })
            .await?
    }

    /// Stops one process gracefully (forgetting its record if `remove`).
    pub async fn retire(&self, generation: u64, remove: bool) {
        let _ = self
            .clone()
            .ask(|reply| Command::Retire {
                generation,
                remove,
                reply,
            })
            .await;
    }

    /// Retires `old` if another process of its slot is starting or serving;
    /// `false` (and `old` untouched) if not.
    pub async fn hand_over(&self, old: u64) -> bool {
        self.clone()
            .ask(|reply| Command::HandOver { old, reply })
            .await
            .unwrap_or(false)
    }

    /// Replaces the config new processes get.
    pub async fn configure(&self, config: AppConfig, base_env: Option<Env>) -> Result<(), String> {
        let config = Box::new(config);
        self.clone()
            .ask(|reply| Command::Configure {
                config,
                base_env,
                reply,
            })
            .await?
    }

    /// Steers new connections to slots `0..slots`; closes unused higher sockets.
    pub async fn route(&self, slots: u32) -> Result<(), String> {
        self.clone()
            .ask(|reply| Command::Route { slots, reply })
            .await?
    }

    /// Connections waiting in the accept queue of `slot`.
    pub async fn queued(&self, slot: u32) -> u32 {
        self.clone()
            .ask(|reply| Command::Queued { slot, reply })
            .await
            .unwrap_or(0)
    }

    /// Graceful stop of every instance.
    pub async fn stop(&self) -> Result<(), String> {
        self.clone().ask(Command::Stop).await
    }

    /// `stop`, `delete` and `kill`: preempts any operation in progress
    /// instead of waiting for it (a start waiting for readiness could take
    /// `listen_timeout`). The actor stops every instance at once (a pending
    /// launch is answered "stopped before it was ready") and the operation
    /// launches nothing more; once it has let go of the lock, a second stop
    /// catches anything it launched meanwhile, and the app is deleted if
    /// `delete`.
    pub async fn halt(&self, delete: bool) -> Result<(), String> {
        self.halts.fetch_add(1, Ordering::SeqCst);
        let first = self.stop().await;
        let _op = self.op.lock().await;
        // Under the lock: a restart for a change or a timer cannot follow.
        let result = if delete {
            self.disarm();
            self.clone().ask(Command::Delete).await
        } else {
            self.watcher.disarm();
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
    async fn persist(&self) -> Result<(), String> {
        self.state.write(self.views()).await
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
            if app.view.borrow().config.port.is_some() {
                let operations = app.op.clone();
                let _ = app.commands.send(Command::LookAtQueues { operations });
            }
        }
    }

    /// Asks for a process to be replaced.
    pub fn report(&self, trouble: Trouble) {
        let _ = self.trouble.send(trouble);
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

    /// Marks an update under way (`true`: no app may be added) or over.
    pub fn set_updating(&self, updating: bool) {
        self.updating
            .store(updating, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits for every app's operation in progress and holds them all
    /// (dropping the guards lets operations run again).
    pub async fn lock_operations(&self) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut guards = Vec::new();
        let apps = self.apps().clone();
        for app in apps {
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
        let apps = self.apps().clone();
        for app in apps {
            if let Ok(app) = app.ask(Command::Freeze).await {
                frozen.push(app);
            }
        }
        frozen
    }

    /// Lets every app act again after a handover that did not happen.
    pub async fn thaw(&self) {
        let apps = self.apps().clone();
        for app in apps {
            let _ = app.ask(Command::Thaw).await;
        }
    }

    /// What a new actor works with, around its log.
    fn surroundings(&self, log: AppLog) -> Surroundings {
        Surroundings {
            reaper: self.reaper.clone(),
            log,
            trouble: self.trouble.clone(),
            state: self.state.clone(),
        }
    }

    /// Registers an app handed over by the previous image, with its running
    /// processes (their exits on `exits`, by pid) and log pipes; equal
    /// environments are shared through `envs`.
    pub fn resume_app(
        &self,
        mut frozen: FrozenApp,
        exits: &mut std::collections::HashMap<u32, oneshot::Receiver<supd_supervisor::Exit>>,
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
        let handle = AppHandle::new(name, actor, log_problem);
        handle.arm_timers(self);
        // Nobody waits on a resumed app's watcher.
        let _ = handle.watcher.begin(&handle, self.home.dir());
        self.apps().push(handle);
        Ok(())
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
    fn with_log_defaults(&self, mut config: AppConfig) -> AppConfig {
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

    fn apps(&self) -> std::sync::MutexGuard<'_, Vec<AppHandle>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(&self, name: &str) -> Option<AppHandle> {
        self.apps().iter().find(|a| a.name == name).cloned()
    }

    /// `all`, or the one app named; an unknown name is an error naming it.
    fn resolve(&self, target: &str) -> Result<Vec<AppHandle>, String> {
        if target == "all" {
            return Ok(self.apps().clone());
        }
        self.find(target)
            .map(|a| vec![a])
            .ok_or_else(|| unknown(target))
    }

    /// Answers one request; long operations report steps on `progress`.
    /// A request that changes apps returns once the state file shows it.
    pub async fn handle(&self, request: Request, progress: &Progress) -> Response {
        let changes_apps = matches!(
            request,
            Request::Start { .. }
                | Request::StartKnown { .. }
                | Request::Stop { .. }
                | Request::Restart { .. }
                | Request::Reload { .. }
                | Request::ReloadApps { .. }
                | Request::Scale { .. }
                | Request::Delete { .. }
                | Request::Resurrect
        );
        let result = match request {
            Request::Ping => Ok(Response::Pong {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                binary: Some(self.image.binary.clone()),
                image_started_ms: self.image.started_ms,
                origin: self.image.origin.clone(),
                sample_interval_ms: Some(self.sample_interval().as_millis() as u64),
                metrics: self.metrics_address().await,
            }),
            Request::Update => update::update(self, &self.image, progress).await,
            Request::Start {
                apps,
                base_env,
                daemon,
            } => match daemon {
                Some(d) => match self.apply_daemon(&d).await {
                    Ok(()) => Ok(self.start(apps, base_env).await),
                    Err(e) => Err(e),
                },
                None => Ok(self.start(apps, base_env).await),
            },
            Request::StartKnown { targets } => self.start_known(&targets).await,
            Request::Stop { target } => {
                self.each(&target, |a| async move { a.halt(false).await })
                    .await
            }
            Request::Restart { target } => {
                self.each(&target, |a| {
                    let registry = self.clone();
                    async move {
                        let result = ops::restart(&a).await;
                        a.watch(&registry).await;
                        result
                    }
                })
                .await
            }
            Request::Reload { target } => {
                let progress = progress.clone();
                self.each(&target, move |a| {
                    let (progress, registry) = (progress.clone(), self.clone());
                    async move {
                        let result = ops::reload(&a, &progress).await;
                        a.watch(&registry).await;
                        result
                    }
                })
                .await
            }
            Request::ReloadApps {
                apps,
                base_env,
                daemon,
            } => match daemon {
                Some(d) => match self.apply_daemon(&d).await {
                    Ok(()) => self.reload_apps(apps, base_env, progress).await,
                    Err(e) => Err(e),
                },
                None => self.reload_apps(apps, base_env, progress).await,
            },
            Request::Scale { name, to } => {
                let app = self.find(&name).ok_or_else(|| unknown(&name));
                match app {
                    Ok(app) => ops::scale(&app, to, progress)
                        .await
                        .map(|()| Response::Done { apps: vec![name] }),
                    Err(e) => Err(e),
                }
            }
            Request::Delete { target } => self.delete(&target).await,
            Request::List => Ok(Response::List {
                processes: self.processes(),
            }),
            Request::Show { name } => self.show(&name),
            Request::LogFiles { target } => self.resolve(&target).map(|apps| Response::LogFiles {
                apps: apps
                    .iter()
                    .map(|a| logs::paths(&self.home, &a.view().config))
                    .collect(),
            }),
            Request::Flush { target } => {
                self.each(&target, |a| async move {
                    let name = a.name.clone();
                    a.ask(Command::Flush)
                        .await?
                        .map_err(|e| format!("app \"{name}\": cannot flush logs: {e}"))
                })
                .await
            }
            Request::Signal { signal, target } => match parse_signal(&signal) {
                Some(sig) => {
                    self.each(&target, move |a| a.ask(move |r| Command::Signal(sig, r)))
                        .await
                }
                None => Err(format!("unknown signal \"{signal}\"")),
            },
            Request::Env { name, instance } => match self.find(&name) {
                Some(app) => app
                    .ask(|reply| Command::Env {
                        slot: instance,
                        reply,
                    })
                    .await
                    .and_then(|env| env.map(|env| Response::Env { env })),
                None => Err(unknown(&name)),
            },
            Request::Reset { target } => self.each(&target, |a| a.ask(Command::Reset)).await,
            Request::Save => self.save().await,
            Request::Resurrect => self.resurrect().await,
            // Deleting (not just stopping) ends every actor, so nothing
            // queued behind the stop (a cron restart, a replacement) can
            // start a process the exiting daemon would leave behind.
            Request::Kill => self.delete("all").await,
        };
        // A change the state file does not show would be lost with the
        // daemon: the command must not claim success (a failed command
        // reports its own error first).
        let recorded = if changes_apps {
            self.persist().await
        } else {
            Ok(())
        };
        let result = result.and_then(|response| recorded.map(|()| response).map_err(unrecorded));
        result.unwrap_or_else(|message| Response::Error { message })
    }

    /// Runs `op` on every targeted app concurrently; the first error wins.
    async fn each<F, Fut>(&self, target: &str, op: F) -> Result<Response, String>
    where
        F: Fn(AppHandle) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let apps = self.resolve(target)?;
        let names = apps.iter().map(|a| a.name.clone()).collect();
        let mut tasks = JoinSet::new();
        for app in apps {
            tasks.spawn(op(app));
        }
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(Response::Done { apps: names }), Err)
    }

    async fn start(&self, configs: Vec<AppConfig>, base_env: BTreeMap<String, String>) -> Response {
        let base_env = Arc::new(base_env);
        let mut outcomes = Vec::new();
        for config in configs {
            let config = self.with_log_defaults(config);
            let name = config.name.clone();
            let result = match self.find(&name) {
                Some(app) => match self.port_taken(config.port, &name) {
                    Ok(()) => {
                        let outcome = ops::start(&app, Some((config, base_env.clone()))).await;
                        app.arm(self).await;
                        outcome
                    }
                    Err(e) => Err(e),
                },
                None => match runnable(&config, &base_env) {
                    Ok(()) => self.add(config, base_env.clone(), Vec::new()).await,
                    Err(e) => Err(e),
                },
            };
            outcomes.push(StartOutcome::of(name, result));
        }
        Response::Started { apps: outcomes }
    }

    /// Starts known apps with their own configs, one after the other, as
    /// `start FILE` starts an app it knows; every name is looked up first,
    /// so an unknown one starts nothing.
    async fn start_known(&self, targets: &[String]) -> Result<Response, String> {
        let mut apps: Vec<AppHandle> = Vec::new();
        for target in targets {
            for app in self.resolve(target)? {
                if !apps.iter().any(|a| a.name == app.name) {
                    apps.push(app);
                }
            }
        }
        let mut outcomes = Vec::new();
        for app in apps {
            let outcome = ops::start(&app, None).await;
            app.arm(self).await;
            outcomes.push(StartOutcome::of(app.name.clone(), outcome));
        }
        Ok(Response::Started { apps: outcomes })
    }

    /// Writes the process list: the daemon settings in force, and each app's
    /// config (with its current instance count), caller environment, and
    /// whether it is stopped.
    async fn save(&self) -> Result<Response, String> {
        let apps: Vec<SavedApp> = self.views().iter().map(SavedApp::of).collect();
        let names = apps.iter().map(|a| a.config.name.clone()).collect();
        let daemon = dump::in_force(
            self.daemon_config(),
            self.sample_interval(),
            self.metrics_address().await,
        );
        let path = dump::save(&self.home, daemon, apps)?;
        tracing::info!(path = %path.display(), "process list saved");
        Ok(Response::Saved { path, apps: names })
    }

    /// Brings back the saved daemon settings (as a file's `[daemon]` would
    /// be applied) and process list (see [`Registry::restore`]). The apps
    /// come back even when a setting cannot (metrics on a port now taken):
    /// that is then the error.
    pub async fn resurrect(&self) -> Result<Response, String> {
        let dump = dump::load(&self.home)?;
        let settings = match &dump.daemon {
            Some(daemon) => self.apply_daemon(daemon).await,
            None => Ok(()),
        };
        let apps = self.restore(dump.apps, HashMap::new()).await;
        settings.map_err(|e| {
            format!("the saved apps are back, but not the saved daemon settings: {e}")
        })?;
        Ok(Response::Started { apps })
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
    async fn add(
        &self,
        config: AppConfig,
        base_env: Env,
        taken: Vec<OwnedFd>,
    ) -> Result<Outcome, String> {
        let handle = self.register(config, base_env, taken)?;
        let outcome = ops::start(&handle, None).await;
        handle.arm(self).await;
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
    fn port_taken(&self, port: Option<u16>, name: &str) -> Result<(), String> {
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

    /// `reload FILE`: running apps get the new config the reload way, new
    /// apps start. Stops at the first failure.
    async fn reload_apps(
        &self,
        configs: Vec<AppConfig>,
        base_env: BTreeMap<String, String>,
        progress: &Progress,
    ) -> Result<Response, String> {
        let base_env = Arc::new(base_env);
        let mut names = Vec::new();
        for config in configs {
            let config = self.with_log_defaults(config);
            let name = config.name.clone();
            match self.find(&name) {
                Some(app) => {
                    self.port_taken(config.port, &name)?;
                    let result = ops::reload_with(&app, config, base_env.clone(), progress).await;
                    app.arm(self).await;
                    result?
                }
                None => {
                    self.add(config, base_env.clone(), Vec::new()).await?;
                    let _ = progress.send(format!("{name}: started (new in the file)"));
                }
            }
            names.push(name);
        }
        Ok(Response::Done { apps: names })
    }

    async fn delete(&self, target: &str) -> Result<Response, String> {
        let result = self
            .each(target, |a| async move { a.halt(true).await })
            .await;
        // Forget every app that is gone, even if another one failed.
        let deleted: &[String] = match &result {
            Ok(Response::Done { apps }) => apps,
            _ => &[],
        };
        self.apps()
            .retain(|a| !deleted.contains(&a.name) && !a.commands.is_closed());
        result
    }

    /// The process table, as `list` shows it.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        self.views()
            .iter()
            .flat_map(|v| processes(v, &self.samples))
            .collect()
    }

    fn show(&self, name: &str) -> Result<Response, String> {
        let app = self
            .find(name)
            .ok_or_else(|| format!("unknown app \"{name}\" (see supctl list)"))?;
        let view = app.view.borrow().clone();
        let instances = view
            .instances
            .iter()
            .zip(processes(&view, &self.samples))
            .map(|(inst, process)| inst.detail(process))
            .collect();
        let logs: AppLogs = logs::paths(&self.home, &view.config);
        let log_problem = app
            .log_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let next_cron_restart = view
            .config
            .cron_restart
            .as_deref()
            .and_then(cron::next_due)
            .map(|t| t.to_rfc3339());
        let config = (*view.config).clone();
        Ok(Response::Show {
            app: Box::new(AppDetail {
                config,
                host: view.host,
                instances,
                logs,
                next_cron_restart,
                log_problem,
                watch_problem: app.watcher.problem(),
            }),
        })
    }
}

/// Whether a new app's program can be run, checked before a user's `start`
/// registers it (a typo then leaves nothing behind). Saved apps brought back
/// are not checked: a program missing for a moment (mid-deploy) must not
/// make the daemon forget them; they come back errored instead.
fn runnable(config: &AppConfig, base_env: &Env) -> Result<(), String> {
    let env = match config.env.contains_key("PATH") {
        true => &config.env,
        false => &**base_env,
    };
    check_program(&config.script, &config.cwd, env)
        .map_err(|e| format!("app \"{}\": {e}", config.name))
}

fn unknown(name: &str) -> String {
    format!("unknown app \"{name}\" (see supctl list)")
}

/// The error of a command whose change could not be recorded.
fn unrecorded(e: String) -> String {
    format!(
        "done, but not recorded ({e}): if the daemon died now, this change would be lost; fix the cause and run the command again"
    )
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

/// The `list` rows of one app.
fn processes(view: &AppView, samples: &Samples) -> Vec<ProcessInfo> {
    let c = &view.config;
    view.instances
        .iter()
        .map(|i| (i, i.pid.map(|p| samples.get(p)).unwrap_or_default()))
        .map(|(i, usage)| ProcessInfo {
            name: c.name.clone(),
            instance: i.slot,
            pid: i.pid,
            status: i.status,
            mode: c.exec_mode,
            restarts: i.restarts,
            uptime_ms: i.uptime_ms(),
            cpu: usage.cpu,
            memory: usage.memory,
            port: c.port,
            host: view.host,
            problem: match i.status {
                Status::Online => view.unserved.get(&i.slot).cloned(),
                _ => None,
            },
        })
        .collect()
}
