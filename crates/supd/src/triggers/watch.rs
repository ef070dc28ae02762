//! `watch` (PM2's watch mode): an app restarts when files it watches change.
//!
//! One task per watching app owns a notify watcher (inotify on Linux, see
//! [`tree`]). It watches every folder under the watched paths one by one
//! and never goes into a folder whose changes would not count
//! (`node_modules`, `.git`, SUPD_HOME, whatever `ignore_watch` matches, see
//! [`rules`]), so a large ignored tree costs no inotify watch; a folder
//! that appears later is added when it does. A watched file is watched
//! through its folder, so an editor that replaces the file on save is
//! still seen.
//!
//! A change that counts starts a quiet period of `watch_delay`, which every
//! further change starts again ([`burst`]); when it ends the task emits a
//! [`Why::Changed`] naming the changed paths and waits while the reactor
//! restarts the app once ([`crate::ops::restart_because`], under its
//! operation lock). The watcher is then built anew, so a watched folder
//! that was removed and made again is watched again. Problems (inotify
//! limits, a watched path that is gone) are logged and shown by `show`;
//! they never stop the daemon.
//!
//! As in PM2, an app is watched while it runs. A follower task per app
//! arms the watch from the app's published view: watching begins when the
//! app runs (a `start`), is built anew when its watch settings change or a
//! problem is pending (a `restart` after a watched folder came back), and
//! ends when every instance is stopped once no operation is under way (a
//! `stop`; a restart's moment between its stop and its launches is not
//! one) or when the app is gone. [`Watch::caught_up`] lets a command
//! return only once the watch follows what it did.

mod burst;
mod rules;
mod tree;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use supd_config::AppConfig;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Emitter, Why};
use crate::app::{AppHandle, AppView};
use crate::ops;
use burst::quiet_after_changes;
use rules::Rules;
use tree::{build, changes_in};

/// The watch of one app, as the daemon sees it (the follower task owns
/// the rest).
#[derive(Clone)]
pub struct Watch {
    /// The latest problem, for `show`.
    problem: Arc<Mutex<Option<String>>>,
    /// Whether a watch task runs.
    armed: Arc<AtomicBool>,
    /// Asks the follower to answer once it follows the latest view.
    syncs: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

/// A running watch task and the settings it watches with.
struct Armed {
    settings: Settings,
    task: JoinHandle<()>,
}

/// What a watch depends on in an app's config.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    watch: Vec<PathBuf>,
    ignore_watch: Vec<String>,
    watch_delay: Duration,
    cwd: PathBuf,
}

impl Settings {
    fn of(config: &AppConfig) -> Settings {
        Settings {
            watch: config.watch.clone(),
            ignore_watch: config.ignore_watch.clone(),
            watch_delay: config.watch_delay,
            cwd: config.cwd.clone(),
        }
    }
}

impl Watch {
    /// Starts the follower of `app`, which watches its `watch` paths
    /// whenever it runs; `home` is SUPD_HOME, never watched.
    pub fn arm(app: &AppHandle, home: &Path, emitter: &Emitter) -> Watch {
        let (syncs, requests) = mpsc::unbounded_channel();
        let watch = Watch {
            problem: Arc::default(),
            armed: Arc::default(),
            syncs,
        };
        let follower = Follower {
            app: app.clone(),
            home: home.to_path_buf(),
            emitter: emitter.clone(),
            watch: watch.clone(),
            armed: None,
        };
        tokio::spawn(follower.run(requests));
        watch
    }

    /// The latest problem watching (an inotify limit, a path that is gone).
    pub fn problem(&self) -> Option<String> {
        lock(&self.problem).clone()
    }

    /// Returns once the watch follows the app's latest view: its paths
    /// watched if it runs (so a change made after a `start` returned is
    /// seen), not watched if it is stopped.
    pub async fn caught_up(&self, app: &AppHandle) {
        // Nothing armed, nothing to arm: no round trip (most apps, most
        // commands), and no copy of the view either.
        let unwatched = app.subscribe().borrow().config.watch.is_empty();
        if unwatched && !self.armed.load(Ordering::SeqCst) {
            return;
        }
        let (answer, answered) = oneshot::channel();
        if self.syncs.send(answer).is_ok() {
            // An error: the app is gone, and so is its watch.
            let _ = answered.await;
        }
    }
}

/// The task that arms one app's watch from its published view.
struct Follower {
    app: AppHandle,
    home: PathBuf,
    emitter: Emitter,
    watch: Watch,
    /// The running watch task, if any.
    armed: Option<Armed>,
}

impl Follower {
    /// Follows the view until the app is gone, answering each request on
    /// `syncs` once the watch follows the view it came after.
    async fn run(mut self, mut syncs: mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
        let mut views = self.app.subscribe();
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            if self.armed.is_some() && !self.runs(&mut views).await {
                self.disarm();
            } else {
                let (config, stopped) = {
                    let view = views.borrow_and_update();
                    (view.config.clone(), ops::all_stopped(&view))
                };
                if let Some(watching) = self.begin(&config, stopped) {
                    let _ = watching.await;
                }
            }
            self.watch
                .armed
                .store(self.armed.is_some(), Ordering::SeqCst);
            for answer in waiting.drain(..) {
                let _ = answer.send(());
            }
            tokio::select! {
                changed = views.changed() => if changed.is_err() { break },
                sync = syncs.recv() => match sync {
                    Some(answer) => waiting.push(answer),
                    None => break,
                },
            }
        }
        self.disarm();
    }

    /// Whether the app runs, once no operation is under way: every
    /// instance stopped while an operation holds the lock is a restart
    /// between its stop and its launches, unless it stays so after.
    async fn runs(&self, views: &mut watch::Receiver<AppView>) -> bool {
        loop {
            if !ops::all_stopped(&views.borrow_and_update()) {
                return true;
            }
            tokio::select! {
                _idle = self.app.op.lock() => {
                    return !ops::all_stopped(&views.borrow_and_update());
                }
                changed = views.changed() => if changed.is_err() { return false },
            }
        }
    }

    /// Starts watching the `watch` paths of `config`, unless it has none
    /// or the app is `stopped`. A watch already running with the same
    /// settings and no problem is kept, pending changes and all. Answers on
    /// the channel once the paths are watched (or could not be).
    fn begin(&mut self, config: &AppConfig, stopped: bool) -> Option<oneshot::Receiver<()>> {
        let settings = Settings::of(config);
        if !stopped
            && let Some(running) = self.armed.as_ref()
            && running.settings == settings
            && !running.task.is_finished()
            && self.watch.problem().is_none()
        {
            return None;
        }
        self.disarm();
        if stopped || settings.watch.is_empty() {
            return None;
        }
        let name = &config.name;
        let rules = match Rules::new(config, &self.home) {
            Ok(rules) => rules,
            Err(e) => {
                note(&self.watch.problem, name, format!("watch: {e}"));
                return None;
            }
        };
        let (watching, answer) = oneshot::channel();
        let task = tokio::spawn(run(
            self.app.clone(),
            Arc::new(rules),
            settings.watch_delay,
            self.watch.problem.clone(),
            self.emitter.clone(),
            watching,
        ));
        self.armed = Some(Armed { settings, task });
        Some(answer)
    }

    /// Stops watching (a change no longer restarts the app).
    fn disarm(&mut self) {
        if let Some(old) = self.armed.take() {
            old.task.abort();
        }
        *lock(&self.watch.problem) = None;
    }
}

/// Locks a mutex, even one a panicking thread left poisoned.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records a problem for `show` and logs it (once while it lasts).
fn note(problem: &Mutex<Option<String>>, app: &str, message: String) {
    let mut current = lock(problem);
    if current.as_deref() != Some(&message) {
        tracing::warn!(app = %app, "{message}");
        *current = Some(message);
    }
}

/// The watch task: builds the watcher (then says so on `watching`), has
/// the app restarted after every burst of changes and builds the watcher
/// anew.
async fn run(
    app: AppHandle,
    rules: Arc<Rules>,
    delay: Duration,
    problem: Arc<Mutex<Option<String>>>,
    emitter: Emitter,
    watching: oneshot::Sender<()>,
) {
    let name = app.name.clone();
    // One channel for every watcher this task builds: events a replaced
    // watcher delivered are still read.
    let (sender, mut events) = mpsc::unbounded_channel();
    let built = build(&rules, &sender, &name, &problem).await;
    let _ = watching.send(());
    let Some(mut tree) = built else {
        return;
    };
    loop {
        let seen = {
            let (rules, tree, name, problem) = (&rules, &tree, &name, &problem);
            let interpret = move |event| changes_in(event, rules, tree, name, problem);
            quiet_after_changes(&mut events, delay, interpret).await
        };
        let Some(changes) = seen else { return };
        emitter.act(&app, Why::Changed(changes.reason())).await;
        // Built before the old one goes, so no change falls in between.
        if let Some(fresh) = build(&rules, &sender, &name, &problem).await {
            tree = fresh;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use supd_proto::Status;

    use super::*;
    use crate::instance::Instance;
    use crate::triggers::Trigger;

    /// A view of app `w` watching its cwd `dir`, its one instance in `status`.
    fn view(dir: &Path, status: Status) -> AppView {
        let mut config = AppConfig::with_defaults("w".into(), "sleep".into(), dir.into());
        config.watch = vec![dir.to_path_buf()];
        config.watch_delay = Duration::from_millis(10);
        let mut instance = Instance::new(0);
        instance.status = status;
        AppView {
            config: Arc::new(config),
            base_env: Arc::default(),
            instances: vec![instance],
            host: None,
            unserved: BTreeMap::new(),
        }
    }

    /// The next trigger emitted, within 10 s.
    async fn next(emitted: &mut mpsc::UnboundedReceiver<Trigger>) -> Trigger {
        tokio::time::timeout(Duration::from_secs(10), emitted.recv())
            .await
            .expect("a trigger within 10 s")
            .expect("the channel is open")
    }

    #[tokio::test]
    async fn the_watch_follows_whether_the_app_runs_once_no_operation_is_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (publish, views) = watch::channel(view(&root, Status::Online));
        let (commands, _actor) = mpsc::unbounded_channel();
        let app = AppHandle::new("w".into(), (commands, views), Arc::default());
        let (emitter, mut emitted) = Emitter::channel();
        let watch = Watch::arm(&app, Path::new("/nonexistent"), &emitter);

        // Running: watched once caught up; a change is emitted, not acted on.
        watch.caught_up(&app).await;
        std::fs::write(root.join("a.js"), "1").unwrap();
        let trigger = next(&mut emitted).await;
        assert_eq!(trigger.why, Why::Changed("watch: a.js changed".into()));
        let _ = trigger.done.expect("the watcher waits").send(());

        // Every instance stopped while an operation holds the lock (a
        // restart between its stop and its launches): still watched until
        // the operation lets go.
        let operation = app.op.clone().lock_owned().await;
        publish.send_replace(view(&root, Status::Stopped));
        let waiting = tokio::spawn({
            let (watch, app) = (watch.clone(), app.clone());
            async move { watch.caught_up(&app).await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "waits for the operation");
        assert!(watch.armed.load(Ordering::SeqCst));
        // Still stopped once it let go: a stop, which ends the watch.
        drop(operation);
        waiting.await.unwrap();
        assert!(!watch.armed.load(Ordering::SeqCst));
        std::fs::write(root.join("b.js"), "1").unwrap();

        // Running again: watched anew; the change made while stopped is not
        // seen (it would be named first).
        publish.send_replace(view(&root, Status::Online));
        watch.caught_up(&app).await;
        std::fs::write(root.join("c.js"), "1").unwrap();
        let trigger = next(&mut emitted).await;
        assert_eq!(trigger.why, Why::Changed("watch: c.js changed".into()));
    }
}
