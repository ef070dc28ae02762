//! The notify watcher of one app: built off the async threads, every
//! folder watched on its own so ignored ones cost nothing, grown when a
//! folder appears; its errors said for people.

use std::path::Path;
use std::sync::{Arc, Mutex};

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::rules::Rules;
use super::{lock, note};

/// A watcher over every watched path, built off the async threads (a
/// large tree means many system calls); `None` when none could be made.
pub async fn build(
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
pub async fn changes_in(
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

/// One notify watcher: every watched folder is watched on its own
/// (non-recursively), so ignored folders cost nothing.
pub struct Tree {
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
    use std::time::Duration;

    use globset::GlobSet;

    use super::*;

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
}
