//! The state file, `SUPD_HOME/state.json`: what a daemon that dies without
//! stopping (SIGKILL, the OOM killer, a bug) leaves for the next one.
//!
//! It holds the apps as `save` writes them (config with the current instance
//! count, caller environment, stopped or not) and every instance process:
//! app, slot, pid (which is also its process group) and start time, so that
//! a recycled pid is never taken for one of ours; and the boot it belongs
//! to. While a daemon runs the file exists; it is rewritten when the apps or
//! their processes change — before a command that changed them returns, and
//! within [`COALESCE`] of a change the daemon made by itself (a crash, a
//! restart) — and removed by a clean stop. So a state file found at start
//! means the previous daemon died, and [`crate::recover`] takes over.
//!
//! It is written atomically but not fsync'd: it describes processes of this
//! boot only, which a power loss ends anyway, and a file from another boot
//! is not acted on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use supd_proto::Home;
use supd_supervisor::procfs;
use tokio::sync::Mutex;

use crate::app::AppView;
use crate::changes::Changes;
use crate::dump::SavedApp;

/// The format's version; another one is not acted on.
const VERSION: u32 = 1;
/// How long changes the daemon makes by itself are gathered into one write.
const COALESCE: Duration = Duration::from_millis(50);

/// The file's contents.
#[derive(Serialize, Deserialize)]
struct State {
    version: u32,
    boot_id: Option<String>,
    apps: Vec<SavedApp>,
    processes: Vec<Recorded>,
}

/// One instance process, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recorded {
    /// Its app.
    pub app: String,
    /// Its instance number.
    pub slot: u32,
    /// Its pid, which is also its process group.
    pub pid: u32,
    /// Its start time ([`procfs::Stat::start_time`]).
    pub start_time: u64,
}

/// What a daemon that died left, as far as it could be read.
#[derive(Default)]
pub struct Left {
    /// The apps to bring back, in start order.
    pub apps: Vec<SavedApp>,
    /// The processes it had running.
    pub processes: Vec<Recorded>,
    /// What could not be read, one line each.
    pub problems: Vec<String>,
    /// The file is from an earlier boot: none of its processes runs.
    pub earlier_boot: bool,
}

/// `SUPD_HOME/state.json`.
fn path(home: &Home) -> PathBuf {
    home.dir().join("state.json")
}

/// Reads the state file a previous daemon left; `None` if there is none (it
/// stopped cleanly, or none ran). Each app and each process is read on its
/// own: a damaged entry is reported and skipped, and the others still count.
pub fn left_behind(home: &Home) -> Option<Left> {
    let path = path(home);
    let shown = path.display();
    let mut left = Left::default();
    let bytes = match supd_proto::home::read_file(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            left.problems.push(format!("cannot read {shown}: {e}"));
            return Some(left);
        }
    };
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) => {
            left.problems
                .push(format!("{shown} is corrupt or truncated ({e})"));
            return Some(left);
        }
    };
    if value["version"] != VERSION {
        left.problems.push(format!(
            "{shown} has format version {}, this supd reads {VERSION}",
            value["version"]
        ));
        return Some(left);
    }
    if let (Some(was), Some(now)) = (value["boot_id"].as_str(), procfs::boot_id())
        && was != now
    {
        left.earlier_boot = true;
        return Some(left);
    }
    left.processes = entries(&value["processes"], "process", &shown, &mut left.problems);
    let apps: Vec<SavedApp> = entries(&value["apps"], "app", &shown, &mut left.problems);
    for app in apps {
        match app.config.validate() {
            Ok(()) => left.apps.push(app),
            Err(e) => left.problems.push(format!(
                "{shown}: app \"{}\" cannot be brought back: {e}",
                app.config.name
            )),
        }
    }
    Some(left)
}

/// The entries of a JSON array that read as `T`; each one that does not is
/// a problem naming its position.
fn entries<T: serde::de::DeserializeOwned>(
    list: &serde_json::Value,
    what: &str,
    shown: &impl std::fmt::Display,
    problems: &mut Vec<String>,
) -> Vec<T> {
    let Some(list) = list.as_array() else {
        problems.push(format!("{shown}: no list of {what}es"));
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            T::deserialize(entry)
                .map_err(|e| problems.push(format!("{shown}: {what} #{i} is unreadable ({e})")))
                .ok()
        })
        .collect()
}

/// Keeps the state file current. Every app actor holds its
/// [`StateFile::changes`] and touches them when its config or processes change.
#[derive(Clone)]
pub struct StateFile {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    boot_id: Option<String>,
    /// Bumped by the actors at every change to what the file records.
    changes: Changes,
    writer: Mutex<Writer>,
}

/// Held while writing, so two writes never race for the temporary file.
#[derive(Default)]
struct Writer {
    /// Between [`StateFile::begin`] and [`StateFile::end`]: before, the file
    /// is the dead daemon's, still to be acted on; after, it is gone.
    live: bool,
    /// What the file holds, so an unchanged state is not written again.
    written: Vec<u8>,
    /// The count of touches the file's contents show: when no touch came
    /// since (a command's write already showed the change), the background
    /// writer has nothing to do and encodes nothing.
    shows: u64,
    /// The start times read for the processes the file holds.
    started: StartTimes,
    /// The last write error, logged once rather than at every retry.
    failed: Option<String>,
}

impl StateFile {
    /// The state file of `home`; nothing is written before [`StateFile::begin`].
    pub fn new(home: &Home) -> StateFile {
        StateFile {
            inner: Arc::new(Inner {
                path: path(home),
                boot_id: procfs::boot_id(),
                changes: Changes::default(),
                writer: Mutex::default(),
            }),
        }
    }

    /// What the actors touch when something recorded changed and its view
    /// is published: the file is rewritten shortly (unless a write reads
    /// that view first).
    pub fn changes(&self) -> Changes {
        self.inner.changes.clone()
    }

    /// Starts keeping the file (once whatever a dead daemon left has been
    /// dealt with): writes from now on replace the dead daemon's file.
    pub async fn begin(&self) {
        let mut writer = self.inner.writer.lock().await;
        writer.live = true;
        writer.written.clear();
    }

    /// Writes the file now, from the `views` read now. An error is what a
    /// command that changed the apps must report: until a write succeeds, a
    /// daemon crash would lose that change.
    pub async fn write(&self, views: impl FnOnce() -> Vec<AppView>) -> Result<(), String> {
        let mut writer = self.inner.writer.lock().await;
        // Counted before the views are read: every change touched by then
        // was published before its touch, so the views show it.
        let touches = self.inner.changes.count();
        self.write_with(&mut writer, views()).await?;
        writer.shows = writer.shows.max(touches);
        Ok(())
    }

    /// A clean stop: the file is removed, unless apps are left (an app that
    /// could not be deleted), which the next daemon must then deal with.
    pub async fn end(&self, views: Vec<AppView>) {
        let mut writer = self.inner.writer.lock().await;
        if views.is_empty() {
            if let Err(e) = std::fs::remove_file(&self.inner.path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!("cannot remove {}: {e}", self.inner.path.display());
            }
        } else {
            // Logged by the write; nobody is left to tell.
            let _ = self.write_with(&mut writer, views).await;
        }
        writer.live = false;
    }

    /// Rewrites the file after each change the daemon makes by itself,
    /// gathering the changes of [`COALESCE`] into one write; a change a
    /// command's write already recorded meanwhile is not encoded again.
    pub async fn keep(self, views: impl Fn() -> Vec<AppView> + Send + 'static) {
        loop {
            self.inner.changes.changed().await;
            tokio::time::sleep(COALESCE).await;
            if self.inner.writer.lock().await.shows == self.inner.changes.count() {
                continue;
            }
            // Logged by the write, and retried at the next change.
            let _ = self.write(&views).await;
        }
    }

    async fn write_with(&self, writer: &mut Writer, views: Vec<AppView>) -> Result<(), String> {
        if !writer.live {
            return Ok(());
        }
        let path = self.inner.path.clone();
        let boot_id = self.inner.boot_id.clone();
        let written = std::mem::take(&mut writer.written);
        let known = std::mem::take(&mut writer.started);
        // Start times come from /proc, and the file is written: off the runtime.
        let done = tokio::task::spawn_blocking(move || {
            let mut started = StartTimes::default();
            let bytes = encode(&views, boot_id, &known, &mut started)?;
            if bytes != written {
                crate::home::write_atomically(&path, &bytes, false).map_err(|e| e.to_string())?;
            }
            Ok((bytes, started))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match done {
            Ok((bytes, started)) => {
                writer.written = bytes;
                writer.started = started;
                if writer.failed.take().is_some() {
                    tracing::info!("the state file is written again");
                }
                Ok(())
            }
            Err(e) => {
                if writer.failed.as_ref() != Some(&e) {
                    tracing::error!("cannot write the state file: {e}");
                }
                writer.failed = Some(e.clone());
                Err(e)
            }
        }
    }
}

/// The start time of each process recorded, by app and generation (which
/// no two processes of an app share), with its pid: a process recorded
/// before is not looked up in /proc again, so a write costs no system call
/// per app (only per process started since the last write).
type StartTimes = HashMap<(String, u64), (u32, u64)>;

/// The state of `views`, as the file's bytes; the start times of the
/// processes it records go to `started`, taken from `known` when there.
fn encode(
    views: &[AppView],
    boot_id: Option<String>,
    known: &StartTimes,
    started: &mut StartTimes,
) -> Result<Vec<u8>, String> {
    let mut processes = Vec::new();
    for view in views {
        for inst in &view.instances {
            let Some(pid) = inst.pid else { continue };
            let key = (view.config.name.clone(), inst.generation);
            let start_time = match known.get(&key) {
                Some(&(was, start_time)) if was == pid => start_time,
                _ => match procfs::stat(pid) {
                    Some(stat) => stat.start_time,
                    // Gone already: nothing to record.
                    None => continue,
                },
            };
            started.insert(key, (pid, start_time));
            processes.push(Recorded {
                app: view.config.name.clone(),
                slot: inst.slot,
                pid,
                start_time,
            });
        }
    }
    let state = State {
        version: VERSION,
        boot_id,
        apps: views.iter().map(SavedApp::of).collect(),
        processes,
    };
    serde_json::to_vec(&state).map_err(|e| format!("cannot encode the state: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::Instance;
    use std::sync::atomic::{AtomicU64, Ordering};
    use supd_config::AppConfig;

    /// An app `name` with one process record per `(generation, pid)`.
    fn view(name: &str, processes: &[(u64, u32)]) -> AppView {
        let instances = processes
            .iter()
            .enumerate()
            .map(|(slot, &(generation, pid))| {
                let mut inst = Instance::new(slot as u32);
                inst.generation = generation;
                inst.pid = Some(pid);
                inst
            })
            .collect();
        AppView {
            config: Arc::new(AppConfig::with_defaults(
                name.into(),
                "sleep".into(),
                "/".into(),
            )),
            base_env: Arc::default(),
            instances,
            host: None,
            unserved: Default::default(),
        }
    }

    /// The start times a write of `views` records, by pid, given `known`.
    fn recorded(views: &[AppView], known: &StartTimes) -> Vec<(u32, u64)> {
        let mut started = StartTimes::default();
        let bytes = encode(views, None, known, &mut started).unwrap();
        let state: State = serde_json::from_slice(&bytes).unwrap();
        let mut by_pid: Vec<(u32, u64)> = started.values().copied().collect();
        by_pid.sort_unstable();
        let mut in_file: Vec<(u32, u64)> = state
            .processes
            .iter()
            .map(|p| (p.pid, p.start_time))
            .collect();
        in_file.sort_unstable();
        assert_eq!(by_pid, in_file, "what is kept is what the file holds");
        in_file
    }

    #[test]
    fn a_start_time_is_read_once_per_process() {
        let me = std::process::id();
        let mine = procfs::stat(me).unwrap().start_time;
        // A pid no process has (above the kernel's pid_max).
        let none = 1 << 23;
        let known: StartTimes = [
            (("a".to_string(), 1), (none, 42)),
            (("b".to_string(), 7), (none, 43)),
        ]
        .into();
        let cases = [
            // Recorded before: kept, /proc is not read (it has no such pid).
            ("known", vec![view("a", &[(1, none)])], vec![(none, 42)]),
            // New: read from /proc.
            ("new", vec![view("a", &[(2, me)])], vec![(me, mine)]),
            // Another process of the same generation's pid: read again
            // (none is there, so nothing is recorded).
            ("pid differs", vec![view("b", &[(7, none - 1)])], vec![]),
            // Same generation in another app: not the same process.
            ("other app", vec![view("c", &[(1, none)])], vec![]),
        ];
        for (what, views, expected) in cases {
            assert_eq!(recorded(&views, &known), expected, "{what}");
        }
    }

    /// A change a command's write recorded is not encoded again by the
    /// background writer; a change nobody wrote is. (Paused time: each
    /// sleep ends after the writer's [`COALESCE`], in order.)
    #[tokio::test(start_paused = true)]
    async fn the_background_writer_skips_what_a_command_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(&Home::at(dir.path()));
        state.begin().await;
        let reads = Arc::new(AtomicU64::new(0));
        let counted = reads.clone();
        tokio::spawn(state.clone().keep(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            vec![view("a", &[])]
        }));
        let wait = || tokio::time::sleep(COALESCE * 2);

        state.changes().touch();
        state.write(|| vec![view("a", &[])]).await.unwrap();
        wait().await;
        assert_eq!(reads.load(Ordering::SeqCst), 0, "written by the command");

        state.changes().touch();
        wait().await;
        assert_eq!(reads.load(Ordering::SeqCst), 1, "written by nobody else");
    }
}
