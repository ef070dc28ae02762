//! Triggers: what restarts or replaces an app without a user asking for
//! it (its `cron_restart` schedule, a failing health check, a change to the
//! files it watches, a process reported in trouble), and the one reactor
//! that acts on them.
//!
//! Each trigger of an app runs in tasks of its own ([`cron`], [`health`],
//! [`watch`]) and re-arms itself by following the app's published view:
//! when its config changes, and for watch when the app starts or stops
//! running; it ends when the app is gone. A trigger never operates on the
//! app: it *emits* a [`Trigger`] on one channel, and the [`reactor`] turns
//! each into the operation of [`crate::ops`] (which takes the app's
//! operation lock), logging what fails. So neither the app nor the ops know
//! of triggers, and the registry only arms them when it registers an app.

mod cron;
mod health;
mod reactor;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use supd_supervisor::Reaper;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::app::{AppHandle, AppView};

pub use cron::next_due;
pub use reactor::react;

/// Why a trigger fired, which says what the reactor does about it.
#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    /// The `cron_restart` expression came due: a graceful restart of the
    /// whole app, if it is online.
    Cron(String),
    /// Files the app watches changed (the reason names them): a graceful
    /// restart of the whole app, unless it was stopped meanwhile.
    Changed(String),
    /// The app's HTTP health check, which speaks for every instance on the
    /// port, kept failing: the app is reloaded.
    Unhealthy,
    /// One process must be replaced (a failed health check, a memory
    /// limit, a silent watchdog).
    Trouble {
        /// The process, by generation.
        generation: u64,
        /// Why, for `show` and the daemon log.
        reason: String,
    },
}

/// One firing of a trigger of one app.
pub struct Trigger {
    /// The app to act on.
    pub app: AppHandle,
    /// What fired, and so what to do.
    pub why: Why,
    /// Told once the operation has ended, for a trigger that waits for it
    /// (a watcher rebuilds itself after its restart).
    done: Option<oneshot::Sender<()>>,
}

/// Where triggers are emitted: the reactor's channel.
#[derive(Clone)]
pub struct Emitter(mpsc::UnboundedSender<Trigger>);

impl Emitter {
    /// The emitter, and the channel the reactor reads ([`react`]).
    pub fn channel() -> (Emitter, mpsc::UnboundedReceiver<Trigger>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Emitter(tx), rx)
    }

    /// Emits a trigger without waiting for what it causes.
    fn send(&self, app: &AppHandle, why: Why) {
        let app = app.clone();
        let _ = self.0.send(Trigger {
            app,
            why,
            done: None,
        });
    }

    /// Emits a trigger and returns once its operation has ended (at once
    /// if the reactor is gone).
    async fn act(&self, app: &AppHandle, why: Why) {
        let (done, ended) = oneshot::channel();
        let app = app.clone();
        let trigger = Trigger {
            app,
            why,
            done: Some(done),
        };
        if self.0.send(trigger).is_ok() {
            let _ = ended.await;
        }
    }
}

/// What arming an app's triggers needs from the daemon.
#[derive(Clone)]
pub struct Arming {
    /// Where they emit.
    pub emitter: Emitter,
    /// The daemon's spawner and reaper, which runs health check commands.
    pub reaper: Reaper,
    /// SUPD_HOME, never watched.
    pub home: PathBuf,
}

/// The armed triggers of one app. They follow its view by themselves;
/// this is what the daemon asks of them.
#[derive(Clone)]
pub struct AppTriggers {
    watch: watch::Watch,
}

impl AppTriggers {
    /// Arms the triggers of a newly registered app; each follows the app's
    /// view from now on and ends once the app is gone.
    pub fn arm(app: &AppHandle, arming: &Arming) -> AppTriggers {
        let (emitter, reaper) = (arming.emitter.clone(), arming.reaper.clone());
        tokio::spawn(follow_config(app.clone(), move |app, view| {
            let timer = cron::arm(app, view, &emitter);
            let checker = health::arm(app, view, &emitter, &reaper);
            timer.into_iter().chain(checker).collect()
        }));
        AppTriggers {
            watch: watch::Watch::arm(app, &arming.home, &arming.emitter),
        }
    }

    /// The latest problem watching the app's files, for `show`.
    pub fn watch_problem(&self) -> Option<String> {
        self.watch.problem()
    }

    /// Returns once the triggers follow the app's latest view: after a
    /// command that started it, a change to its files is seen; after one
    /// that stopped it, none restarts it.
    pub async fn caught_up(&self, app: &AppHandle) {
        self.watch.caught_up(app).await;
    }
}

/// Keeps the tasks of the app's timers (cron restart, health check) armed
/// from its config: `arm` builds them from the view now and again whenever
/// the config is replaced, the previous ones aborted; ends, aborting them,
/// once the app is gone.
async fn follow_config(app: AppHandle, arm: impl Fn(&AppHandle, &AppView) -> Vec<JoinHandle<()>>) {
    let mut views = app.subscribe();
    let mut config = None;
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    loop {
        // Held, the old config's address cannot be reused by a new one.
        let replaced = {
            let view = views.borrow_and_update();
            let same = config
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &view.config));
            (!same).then(|| view.clone())
        };
        if let Some(view) = replaced {
            tasks.drain(..).for_each(|old| old.abort());
            tasks = arm(&app, &view);
            config = Some(view.config);
        }
        if views.changed().await.is_err() {
            break;
        }
    }
    tasks.iter().for_each(JoinHandle::abort);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use supd_config::AppConfig;
    use tokio::sync::watch;

    use super::*;
    use crate::instance::Instance;

    /// A view of app `t` with `config` and `instances` never-run slots.
    fn view(config: &Arc<AppConfig>, instances: u32) -> AppView {
        AppView {
            config: config.clone(),
            base_env: Arc::default(),
            instances: (0..instances).map(Instance::new).collect(),
            host: None,
            unserved: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn timers_are_armed_again_when_the_config_is_replaced_and_end_with_the_app() {
        let config = Arc::new(AppConfig::with_defaults("t".into(), "x".into(), "/".into()));
        let (publish, views) = watch::channel(view(&config, 1));
        let (commands, _actor) = mpsc::unbounded_channel();
        let app = AppHandle::new("t".into(), (commands, views), Arc::default());
        let armed = Arc::new(AtomicUsize::new(0));
        let (arms, mut ended) = mpsc::unbounded_channel::<usize>();
        let counter = armed.clone();
        let follower = tokio::spawn(follow_config(app, move |_, _| {
            // Each timer says which arming it was when it is aborted.
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let guard = Ended(n, arms.clone());
            vec![tokio::spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })]
        }));
        let settled = async || {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        };
        settled().await;
        assert_eq!(armed.load(Ordering::SeqCst), 1, "armed at once");
        // A view with the same config (a process changed): left alone.
        publish.send_replace(view(&config, 2));
        settled().await;
        assert_eq!(armed.load(Ordering::SeqCst), 1);
        // A new config: the old timer goes, a new one comes.
        let config = Arc::new((*config).clone());
        publish.send_replace(view(&config, 2));
        assert_eq!(ended.recv().await, Some(0));
        assert_eq!(armed.load(Ordering::SeqCst), 2);
        // The app gone: its timer goes with the follower.
        drop(publish);
        assert_eq!(ended.recv().await, Some(1));
        follower.await.unwrap();
    }

    /// Says on its channel which arming it belonged to once dropped.
    struct Ended(usize, mpsc::UnboundedSender<usize>);

    impl Drop for Ended {
        fn drop(&mut self) {
            let _ = self.1.send(self.0);
        }
    }
}
