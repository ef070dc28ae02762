//! `watch` (PM2's watch mode): an app restarts when files it watches change.
//!
//! One task per watching app owns a notify watcher (inotify on Linux). It
//! watches every folder under the watched paths one by one and never goes
//! into a folder whose changes would not count (`node_modules`, `.git`,
//! SUPD_HOME, whatever `ignore_watch` matches), so a large ignored tree
//! costs no inotify watch; a folder that appears later is added when it
//! does. A watched file is watched through its folder, so an editor that
//! replaces the file on save is still seen.
//!
//! A change that counts starts a quiet period of `watch_delay`, which every
//! further change starts again; when it ends the app restarts once
//! ([`ops::restart_because`], under its operation lock), the changed path
//! named as the reason. The watcher is then built anew, so a watched folder
//! that was removed and made again is watched again. Problems (inotify
//! limits, a watched path that is gone) are logged and shown by `show`;
//! they never stop the daemon.
//!
//! As in PM2, an app is watched while it runs: `start`, `restart` and
//! `reload` arm its watcher, `stop` and `delete` disarm it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use globset::GlobSet;
use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use supd_config::AppConfig;
use supd_proto::Status;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::app::AppHandle;
use crate::ops;

/// Folder names whose contents never count, at any depth: dependencies and
/// version control.
const ALWAYS_IGNORED: &[&str] = &["node_modules", ".git"];

/// The watcher of one app: armed from its config, disarmed on `stop`.
#[derive(Clone, Default)]
pub struct Watcher {
    /// The running watch task, if any, and what it was built from.
    armed: Arc<Mutex<Option<Armed>>>,
    /// The latest problem, for `show`.
    problem: Arc<Mutex<Option<String>>>,
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

impl Watcher {
    /// Watches the app's `watch` paths from now on (see [`Watcher::begin`]);
    /// returns once they are watched, so a change made after a `start`
    /// returned is seen.
    pub async fn arm(&self, app: &AppHandle, home: &Path) {
        if let Some(watching) = self.begin(app, home) {
            let _ = watching.await;
        }
    }

    /// Starts watching the app's `watch` paths, unless it has none or is
    /// stopped (every instance stopped: a `stop`, or never started). A
    /// watch already running with the same settings and no problem is
    /// kept, pending changes and all; `home` is SUPD_HOME, never watched.
    /// Answers on the channel once the paths are watched (or could not be).
    pub fn begin(&self, app: &AppHandle, home: &Path) -> Option<oneshot::Receiver<()>> {
        let view = app.view();
        let settings = Settings::of(&view.config);
        let stopped = view.instances.iter().all(|i| i.status == Status::Stopped);
        let mut armed = lock(&self.armed);
        if !stopped
            && let Some(running) = armed.as_ref()
            && running.settings == settings
            && !running.task.is_finished()
            && self.problem().is_none()
        {
            return None;
        }
        if let Some(old) = armed.take() {
            old.task.abort();
        }
        *lock(&self.problem) = None;
        if stopped || settings.watch.is_empty() {
            return None;
        }
        let name = &view.config.name;
        let rules = match Rules::new(&view.config, home) {
            Ok(rules) => rules,
            Err(e) => {
                note(&self.problem, name, format!("watch: {e}"));
                return None;
            }
        };
        let (watching, answer) = oneshot::channel();
        let task = tokio::spawn(run(
            app.clone(),
            Arc::new(rules),
            settings.watch_delay,
            self.problem.clone(),
            watching,
        ));
        *armed = Some(Armed { settings, task });
        Some(answer)
    }

    /// Stops watching (a change no longer restarts the app).
    pub fn disarm(&self) {
        if let Some(old) = lock(&self.armed).take() {
            old.task.abort();
        }
        *lock(&self.problem) = None;
    }

    /// The latest problem watching (an inotify limit, a path that is gone).
    pub fn problem(&self) -> Option<String> {
        lock(&self.problem).clone()
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

/// The watch task: builds the watcher (then says so on `watching`),
/// restarts the app after every burst of changes and builds the watcher
/// anew.
async fn run(
    app: AppHandle,
    rules: Arc<Rules>,
    delay: Duration,
    problem: Arc<Mutex<Option<String>>>,
    watching: oneshot::Sender<()>,
) {
    let name = app.view().config.name.clone();
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
        let reason = changes.reason();
        tracing::info!(app = %name, "{reason}: restarting");
        let (progress, _) = mpsc::unbounded_channel();
        if let Err(e) = ops::restart_because(&app, &reason, &progress).await {
            tracing::error!(app = %name, "restart after a change failed: {e}");
        }
        // Built before the old one goes, so no change falls in between.
        if let Some(fresh) = build(&rules, &sender, &name, &problem).await {
            tree = fresh;
        }
    }
}

/// A watcher over every watched path, built off the async threads (a
/// large tree means many system calls); `None` when none could be made.
async fn build(
    rules: &Arc<Rules>,
    sender: &mpsc::UnboundedSender<notify::Result<notify::Event>>,
    name: &str,
    problem: &Mutex<Option<String>>,
) -> Option<Arc<Mutex<Tree>>> {
    let (rules, sender) = (rules.clone(), sender.clone());
    let built = tokio::task::spawn_blocking(move || {
        let mut tree = Tree::new(sender)?;
        let problems: Vec<String> = rules
            .roots
            .iter()
            .filter_map(|root| tree.add(&rules, root))
            .collect();
        Ok((tree, problems))
    })
    .await
    .unwrap_or_else(|e| Err(format!("cannot watch: {e}")));
    match built {
        Ok((tree, problems)) => {
            if problems.is_empty() {
                *lock(problem) = None;
            } else {
                note(problem, name, format!("watch: {}", problems.join("; ")));
            }
            Some(Arc::new(Mutex::new(tree)))
        }
        Err(e) => {
            note(problem, name, format!("watch: {e}"));
            None
        }
    }
}

/// The changes one notify event brings, by name; a folder that appeared
/// is watched from now on. Errors become the app's watch problem.
async fn changes_in(
    event: notify::Result<notify::Event>,
    rules: &Arc<Rules>,
    tree: &Arc<Mutex<Tree>>,
    name: &str,
    problem: &Mutex<Option<String>>,
) -> Vec<String> {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            note(problem, name, format!("watch: {}", describe(&e, None)));
            return Vec::new();
        }
    };
    // The kernel dropped events: what changed is unknown, so all of it did.
    if event.need_rescan() {
        return rules.roots.iter().map(|r| rules.name(r)).collect();
    }
    let appears = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
    );
    if event.kind.is_access() {
        return Vec::new();
    }
    let mut changes = Vec::new();
    for path in event.paths {
        if !rules.counts(&path) {
            continue;
        }
        changes.push(rules.name(&path));
        if appears && path.is_dir() {
            let (tree, rules) = (tree.clone(), rules.clone());
            let added = tokio::task::spawn_blocking(move || lock(&tree).add(&rules, &path)).await;
            if let Ok(Some(e)) = added {
                note(problem, name, format!("watch: {e}"));
            }
        }
    }
    changes
}

/// Waits for a change that counts, then until `delay` passes without
/// another one; the changes seen meanwhile. `interpret` turns each event
/// into the names of the changes it brings (none for one that does not
/// count). `None` once no event can come any more.
async fn quiet_after_changes<E, F>(
    events: &mut mpsc::UnboundedReceiver<E>,
    delay: Duration,
    mut interpret: impl FnMut(E) -> F,
) -> Option<Changes>
where
    F: Future<Output = Vec<String>>,
{
    let mut changes = Changes::default();
    let mut quiet_at: Option<Instant> = None;
    loop {
        let event = match quiet_at {
            None => events.recv().await?,
            Some(at) => tokio::select! {
                event = events.recv() => event?,
                () = tokio::time::sleep_until(at) => return Some(changes),
            },
        };
        let names = interpret(event).await;
        if !names.is_empty() {
            changes.names.extend(names);
            quiet_at = Some(Instant::now() + delay);
        }
    }
}

/// The changes of one burst, by name (relative to the app's cwd).
#[derive(Debug, Default)]
struct Changes {
    names: BTreeSet<String>,
}

impl Changes {
    /// `watch: src/app.js changed`, or `watch: src/a.js and 2 other paths changed`.
    fn reason(&self) -> String {
        let mut names = self.names.iter();
        let first = names.next().map_or(".", String::as_str);
        match names.count() {
            0 => format!("watch: {first} changed"),
            1 => format!("watch: {first} and 1 other path changed"),
            more => format!("watch: {first} and {more} other paths changed"),
        }
    }
}

/// What counts as a change of one app.
#[derive(Debug)]
struct Rules {
    /// The watched paths (real paths, when they exist).
    roots: Vec<PathBuf>,
    /// The app's cwd (real path): PM2's base for patterns, and for names.
    cwd: PathBuf,
    /// `ignore_watch`.
    ignore: GlobSet,
    /// SUPD_HOME (real path): its logs and state files change at every
    /// restart, so they must never cause one.
    home: PathBuf,
}

impl Rules {
    fn new(config: &AppConfig, home: &Path) -> Result<Rules, String> {
        let real = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        Ok(Rules {
            roots: config.watch.iter().map(|p| real(p)).collect(),
            cwd: real(&config.cwd),
            ignore: config.watch_ignore()?,
            home: real(home),
        })
    }

    /// Whether a change at `path` restarts the app: it is a watched path or
    /// lies under one, outside SUPD_HOME, not under `node_modules` or
    /// `.git`, and no `ignore_watch` pattern matches it or a folder it is
    /// in. Patterns are matched against the path relative to the watched
    /// path, relative to the app's cwd (as PM2 does) and as an absolute
    /// path; a pattern without `/` also against each name in it.
    fn counts(&self, path: &Path) -> bool {
        let Some(root) = self.roots.iter().find(|root| path.starts_with(root)) else {
            return false;
        };
        if self.home.starts_with(root) && path.starts_with(&self.home) {
            return false;
        }
        let inside = path.strip_prefix(root).unwrap_or(path);
        if inside
            .components()
            .any(|c| ALWAYS_IGNORED.iter().any(|name| c.as_os_str() == *name))
        {
            return false;
        }
        if self.ignore.is_empty() {
            return true;
        }
        let from_cwd = path.strip_prefix(&self.cwd).ok();
        let names = inside.components().map(|c| Path::new(c.as_os_str()));
        let mut candidates = inside
            .ancestors()
            .chain(from_cwd.into_iter().flat_map(Path::ancestors))
            .chain(path.ancestors())
            .chain(names)
            .filter(|c| !c.as_os_str().is_empty());
        !candidates.any(|c| self.ignore.is_match(c))
    }

    /// How a reason names `path`: relative to the app's cwd when under it.
    fn name(&self, path: &Path) -> String {
        match path.strip_prefix(&self.cwd) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }
}

/// One notify watcher: every watched folder is watched on its own
/// (non-recursively), so ignored folders cost nothing.
struct Tree {
    watcher: RecommendedWatcher,
}

impl Tree {
    /// A watcher sending its events to `sender`.
    fn new(sender: mpsc::UnboundedSender<notify::Result<notify::Event>>) -> Result<Tree, String> {
        let watcher = notify::recommended_watcher(move |event| {
            let _ = sender.send(event);
        })
        .map_err(|e| describe(&e, None))?;
        Ok(Tree { watcher })
    }

    /// Watches `path`: a file through its folder; a folder, and every
    /// folder under it whose changes count, each on its own (symbolic
    /// links are not followed). The problem, if something is not watched.
    fn add(&mut self, rules: &Rules, path: &Path) -> Option<String> {
        match std::fs::metadata(path) {
            Err(e) => return Some(format!("cannot watch {}: {e}", path.display())),
            Ok(meta) if !meta.is_dir() => {
                let folder = path.parent().unwrap_or(Path::new("/"));
                return self
                    .watcher
                    .watch(folder, RecursiveMode::NonRecursive)
                    .err()
                    .map(|e| describe(&e, Some(path)));
            }
            Ok(_) => {}
        }
        let mut folders = vec![path.to_path_buf()];
        let mut problem = None;
        while let Some(folder) = folders.pop() {
            if !rules.counts(&folder) {
                continue;
            }
            match self.watcher.watch(&folder, RecursiveMode::NonRecursive) {
                Ok(()) => {}
                // Removed since it was seen: nothing left to watch there.
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => continue,
                Err(e) => {
                    let limit = matches!(e.kind, notify::ErrorKind::MaxFilesWatch);
                    problem = Some(describe(&e, Some(&folder)));
                    if limit {
                        break;
                    }
                    continue;
                }
            }
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            folders.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        problem
    }
}

/// A notify error for people, with what to do about the inotify limits.
fn describe(e: &notify::Error, path: Option<&Path>) -> String {
    let at = path.map_or(String::new(), |p| format!(" {}", p.display()));
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => format!(
            "the inotify watch limit is reached (sysctl fs.inotify.max_user_watches): cannot watch{at} and the folders after it"
        ),
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE) => format!(
            "cannot watch{at}: {io} (too many inotify instances? sysctl fs.inotify.max_user_instances)"
        ),
        notify::ErrorKind::Io(io) => format!("cannot watch{at}: {io}"),
        _ => format!("cannot watch{at}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules over `root` (watched) inside `cwd`, with `ignore` patterns.
    fn rules(cwd: &str, roots: &[&str], ignore: &[&str]) -> Rules {
        let mut config = AppConfig::with_defaults("a".into(), "x".into(), cwd.into());
        config.watch = roots.iter().map(PathBuf::from).collect();
        config.ignore_watch = ignore.iter().map(|s| s.to_string()).collect();
        Rules {
            roots: config.watch.clone(),
            cwd: cwd.into(),
            ignore: config.watch_ignore().expect("valid patterns"),
            home: "/srv/app/.supd".into(),
        }
    }

    #[test]
    fn what_counts() {
        let r = rules(
            "/srv/app",
            &["/srv/app"],
            &["*.log", "tmp", "build/**", "docs/*.md", "/srv/app/cache"],
        );
        for counts in [
            "/srv/app",
            "/srv/app/server.js",
            "/srv/app/src/deep/a.js",
            "/srv/app/docs/deep/a.md",
            "/srv/app/builder/x.js",
            "/srv/app/logs.d/x",
        ] {
            assert!(r.counts(Path::new(counts)), "{counts} counts");
        }
        for ignored in [
            "/elsewhere/a.js",
            "/srv/application/a.js",
            "/srv/app/node_modules/x/index.js",
            "/srv/app/src/node_modules/y",
            "/srv/app/.git/index",
            "/srv/app/.supd/logs/a-out.log",
            "/srv/app/.supd/state.json",
            "/srv/app/a.log",
            "/srv/app/src/deep/b.log",
            "/srv/app/tmp",
            "/srv/app/src/tmp/x.js",
            "/srv/app/build",
            "/srv/app/build/out.js",
            "/srv/app/docs/a.md",
            "/srv/app/cache/x",
        ] {
            assert!(!r.counts(Path::new(ignored)), "{ignored} is ignored");
        }
    }

    #[test]
    fn patterns_match_from_the_cwd_and_from_the_watched_path() {
        let r = rules(
            "/srv/app",
            &["/srv/app/src", "/srv/app/config.json"],
            &["src/generated/**", "fixtures"],
        );
        assert!(r.counts(Path::new("/srv/app/src/a.js")));
        assert!(r.counts(Path::new("/srv/app/config.json")));
        // Beside a watched file, in its folder: not watched.
        assert!(!r.counts(Path::new("/srv/app/other.json")));
        // PM2's way: relative to the cwd.
        assert!(!r.counts(Path::new("/srv/app/src/generated/x.js")));
        // A name, under the watched folder.
        assert!(!r.counts(Path::new("/srv/app/src/fixtures/y.json")));
        assert_eq!(r.name(Path::new("/srv/app/src/a.js")), "src/a.js");
        assert_eq!(r.name(Path::new("/srv/app")), ".");
        assert_eq!(r.name(Path::new("/opt/x")), "/opt/x");
    }

    #[test]
    fn supd_home_counts_when_it_holds_the_app() {
        // An app kept inside SUPD_HOME is watched as usual.
        let mut r = rules("/srv/app", &["/srv/app"], &[]);
        r.home = "/srv".into();
        assert!(r.counts(Path::new("/srv/app/a.js")));
    }

    #[test]
    fn reasons_name_the_changes() {
        let mut changes = Changes::default();
        changes.names.insert("src/a.js".into());
        assert_eq!(changes.reason(), "watch: src/a.js changed");
        changes.names.insert("src/b.js".into());
        assert_eq!(changes.reason(), "watch: src/a.js and 1 other path changed");
        changes.names.insert("src/c.js".into());
        assert_eq!(
            changes.reason(),
            "watch: src/a.js and 2 other paths changed"
        );
    }

    /// Sends `events` into a fresh channel, each after its delay (paused time).
    fn feed(events: &[(u64, &'static str)]) -> mpsc::UnboundedReceiver<&'static str> {
        let (tx, rx) = mpsc::unbounded_channel();
        let events = events.to_vec();
        tokio::spawn(async move {
            for (after, name) in events {
                tokio::time::sleep(Duration::from_millis(after)).await;
                let _ = tx.send(name);
            }
            // Kept open, as a live watcher keeps its channel.
            std::future::pending::<()>().await;
        });
        rx
    }

    /// Names that count: all but those starting with `ignored`.
    async fn counted(name: &'static str) -> Vec<String> {
        if name.starts_with("ignored") {
            Vec::new()
        } else {
            vec![name.to_string()]
        }
    }

    #[tokio::test(start_paused = true)]
    async fn changes_within_the_delay_make_one_burst() {
        let start = Instant::now();
        let delay = Duration::from_millis(200);
        let mut rx = feed(&[(100, "a"), (150, "b"), (150, "a"), (1000, "c")]);
        let burst = quiet_after_changes(&mut rx, delay, counted).await.unwrap();
        assert_eq!(burst.names.iter().collect::<Vec<_>>(), ["a", "b"]);
        // The last change came at 400 ms; quiet for 200 ms after it.
        assert_eq!(start.elapsed(), Duration::from_millis(600));
        let burst = quiet_after_changes(&mut rx, delay, counted).await.unwrap();
        assert_eq!(burst.names.iter().collect::<Vec<_>>(), ["c"]);
        assert_eq!(start.elapsed(), Duration::from_millis(1600));
    }

    #[tokio::test(start_paused = true)]
    async fn ignored_changes_neither_start_nor_extend_the_delay() {
        let start = Instant::now();
        let delay = Duration::from_millis(200);
        let mut rx = feed(&[
            (50, "ignored1"),
            (50, "a"),
            (150, "ignored2"),
            (150, "ignored3"),
        ]);
        let burst = quiet_after_changes(&mut rx, delay, counted).await.unwrap();
        assert_eq!(burst.names.iter().collect::<Vec<_>>(), ["a"]);
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_folder_that_appears_is_watched_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let rules = Arc::new(Rules {
            roots: vec![root.clone()],
            cwd: root.clone(),
            ignore: GlobSet::empty(),
            home: "/nonexistent".into(),
        });
        let problem = Mutex::new(None);
        let (sender, mut events) = mpsc::unbounded_channel();
        let tree = build(&rules, &sender, "t", &problem)
            .await
            .expect("a watcher");
        let mut seen = async |want: &str| loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .unwrap_or_else(|_| panic!("no event for {want}"))
                .expect("the channel is open");
            if changes_in(event, &rules, &tree, "t", &problem)
                .await
                .iter()
                .any(|name| name == want)
            {
                return;
            }
        };
        std::fs::create_dir(root.join("new")).unwrap();
        seen("new").await;
        std::fs::write(root.join("new/x.js"), "1").unwrap();
        seen("new/x.js").await;
        assert_eq!(*lock(&problem), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_channel_ends_the_wait() {
        let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
        drop(tx);
        assert!(
            quiet_after_changes(&mut rx, Duration::from_millis(10), counted)
                .await
                .is_none()
        );
    }
}
