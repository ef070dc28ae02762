//! What the dashboard shows, and how samples and keys change it.
//!
//! Everything here is plain data and pure functions: no terminal, no socket,
//! no files. The event loop in [`super`] feeds it samples from the daemon,
//! log lines and key presses, and draws it with [`super::draw::draw`].

use std::collections::{HashMap, VecDeque};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use supd_proto::{AppLogs, ProcessInfo, Request, ScaleTo};

/// How many samples each history keeps (one per tick: a minute by default).
pub const HISTORY: usize = 60;

/// A bounded series of samples, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History<T> {
    points: VecDeque<T>,
}

impl<T: Copy> History<T> {
    /// Appends a sample, dropping the oldest beyond [`HISTORY`].
    pub fn push(&mut self, value: T) {
        if self.points.len() == HISTORY {
            self.points.pop_front();
        }
        self.points.push_back(value);
    }

    /// The newest sample, if any.
    pub fn last(&self) -> Option<T> {
        self.points.back().copied()
    }

    /// The samples, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = T> + ExactSizeIterator + '_ {
        self.points.iter().copied()
    }
}

/// One app: its name and what the CLI remembers about it between samples.
#[derive(Debug, Clone)]
pub struct App {
    /// App name.
    pub name: String,
    /// CPU percent summed over the app's instances, one point per sample.
    pub cpu: History<f64>,
    /// RSS bytes summed over the app's instances, one point per sample.
    pub memory: History<u64>,
    /// Where its log files are, once the daemon has said.
    pub logs: Option<AppLogs>,
}

impl App {
    fn new(name: &str) -> App {
        App {
            name: name.to_string(),
            cpu: History::default(),
            memory: History::default(),
            logs: None,
        }
    }
}

/// One line of an app's log, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The text, control characters removed.
    pub text: String,
    /// Whether it came from the err file (drawn in red).
    pub err: bool,
}

/// How the status line is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// An action is running.
    Busy,
    /// An action succeeded.
    Ok,
    /// An action failed; the text is the daemon's reason.
    Error,
}

/// An action the user asked for, to run on the worker's connection.
#[derive(Debug, Clone)]
pub struct Action {
    /// What the status line calls it, e.g. `reload api-gateway`.
    pub label: String,
    /// What to send to the daemon.
    pub request: Request,
}

/// What a key press asks the event loop to do.
#[derive(Debug)]
pub enum KeyOutcome {
    /// Nothing changed.
    Nothing,
    /// The state changed: draw again.
    Redraw,
    /// Leave the dashboard.
    Quit,
    /// Run this action (the state changed too: the status line says so).
    Act(Action),
}

/// Everything the screen shows.
#[derive(Debug, Default)]
pub struct Dashboard {
    /// The latest process table, in the daemon's order.
    pub processes: Vec<ProcessInfo>,
    /// One entry per app, in order of first appearance in the table.
    pub apps: Vec<App>,
    /// Index into `apps` of the selected app (0 when there is none).
    pub selected: usize,
    /// The selected app's recent log lines, oldest first.
    pub logs: Vec<LogLine>,
    /// The last action's progress or result.
    pub status: Option<(Tone, String)>,
    /// Why the daemon cannot be reached, while it cannot.
    pub offline: Option<String>,
    /// Whether a process table has arrived yet.
    pub loaded: bool,
}

impl Dashboard {
    /// An empty dashboard, waiting for its first sample.
    pub fn new() -> Dashboard {
        Dashboard::default()
    }

    /// The selected app, if there is one.
    pub fn selected_app(&self) -> Option<&App> {
        self.apps.get(self.selected)
    }

    /// Takes a new process table: regroups the apps (keeping their
    /// histories and the selection, by name), and appends one history point
    /// per app.
    pub fn update(&mut self, processes: Vec<ProcessInfo>) {
        let selected = self.selected_app().map(|a| a.name.clone());
        let mut old: HashMap<String, App> =
            self.apps.drain(..).map(|a| (a.name.clone(), a)).collect();
        for p in &processes {
            if !self.apps.iter().any(|a| a.name == p.name) {
                let app = old.remove(&p.name).unwrap_or_else(|| App::new(&p.name));
                self.apps.push(app);
            }
        }
        for app in &mut self.apps {
            let mine = processes.iter().filter(|p| p.name == app.name);
            let (cpu, memory) = mine.fold((0.0, 0), |(c, m), p| (c + p.cpu, m + p.memory));
            app.cpu.push(cpu);
            app.memory.push(memory);
        }
        // Keep the same app selected; if it is gone, stay at the same place.
        self.selected = selected
            .and_then(|name| self.apps.iter().position(|a| a.name == name))
            .unwrap_or(self.selected)
            .min(self.apps.len().saturating_sub(1));
        self.processes = processes;
        self.offline = None;
        self.loaded = true;
    }

    /// Records where the apps' log files are.
    pub fn set_log_paths(&mut self, logs: Vec<AppLogs>) {
        for paths in logs {
            if let Some(app) = self.apps.iter_mut().find(|a| a.name == paths.name) {
                app.logs = Some(paths);
            }
        }
    }

    /// The daemon did not answer; `reason` says why. The last table stays
    /// on screen under the warning.
    pub fn disconnected(&mut self, reason: String) {
        self.offline = Some(reason);
    }

    /// Sets the status line.
    pub fn set_status(&mut self, tone: Tone, text: impl Into<String>) {
        self.status = Some((tone, text.into()));
    }

    /// Handles one key press.
    pub fn key(&mut self, key: KeyEvent) -> KeyOutcome {
        // Ctrl-C quits (raw mode turns it into a key); other chords do nothing,
        // so that a stray Ctrl-R is not a restart.
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers == KeyModifiers::CONTROL;
            return if ctrl_c {
                KeyOutcome::Quit
            } else {
                KeyOutcome::Nothing
            };
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => KeyOutcome::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.select(self.selected.saturating_sub(1)),
            KeyCode::Down | KeyCode::Char('j') => self.select(self.selected + 1),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(usize::MAX),
            KeyCode::Char('r') => self.act("restart", |name| Request::Restart { target: name }),
            KeyCode::Char('R' | 'l') => self.act("reload", |name| Request::Reload { target: name }),
            KeyCode::Char('s') => self.act("stop", |name| Request::Stop { target: name }),
            KeyCode::Char('+') => self.act("scale +1", |name| Request::Scale {
                name,
                to: ScaleTo::Add(1),
            }),
            KeyCode::Char('-') => self.act("scale -1", |name| Request::Scale {
                name,
                to: ScaleTo::Remove(1),
            }),
            _ => KeyOutcome::Nothing,
        }
    }

    /// Moves the selection to app `index` (clamped).
    fn select(&mut self, index: usize) -> KeyOutcome {
        let index = index.min(self.apps.len().saturating_sub(1));
        if index == self.selected {
            return KeyOutcome::Nothing;
        }
        self.selected = index;
        // The event loop loads the new app's logs; don't show the old ones meanwhile.
        self.logs.clear();
        KeyOutcome::Redraw
    }

    /// An action on the selected app; nothing without one.
    fn act(&mut self, verb: &str, request: impl FnOnce(String) -> Request) -> KeyOutcome {
        let Some(app) = self.selected_app() else {
            return KeyOutcome::Nothing;
        };
        let name = app.name.clone();
        let label = match verb.split_once(' ') {
            // `scale api +1`
            Some((verb, by)) => format!("{verb} {name} {by}"),
            None => format!("{verb} {name}"),
        };
        self.set_status(Tone::Busy, format!("{label}…"));
        KeyOutcome::Act(Action {
            label,
            request: request(name),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use supd_config::ExecMode;
    use supd_proto::Status;

    /// A process row for tests.
    pub fn process(
        name: &str,
        instance: u32,
        status: Status,
        cpu: f64,
        memory: u64,
    ) -> ProcessInfo {
        ProcessInfo {
            name: name.into(),
            instance,
            pid: (status == Status::Online).then_some(1000 + instance),
            status,
            mode: if instance > 0 {
                ExecMode::Cluster
            } else {
                ExecMode::Fork
            },
            restarts: 0,
            uptime_ms: 5_000,
            cpu,
            memory,
            port: None,
            host: None,
            problem: None,
        }
    }

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn two_apps() -> Dashboard {
        let mut d = Dashboard::new();
        d.update(vec![
            process("api", 0, Status::Online, 1.5, 100),
            process("api", 1, Status::Online, 2.5, 200),
            process("worker", 0, Status::Errored, 0.0, 0),
        ]);
        d
    }

    #[test]
    fn groups_instances_into_apps_and_sums_histories() {
        let mut d = two_apps();
        assert_eq!(d.apps.len(), 2);
        assert_eq!(d.apps[0].cpu.last(), Some(4.0));
        assert_eq!(d.apps[0].memory.last(), Some(300));
        for _ in 0..HISTORY + 5 {
            d.update(d.processes.clone());
        }
        assert_eq!(d.apps[0].memory.iter().len(), HISTORY);
        assert!(d.loaded);
    }

    #[test]
    fn selection_moves_over_apps_and_follows_its_app() {
        let mut d = two_apps();
        assert_eq!(d.selected_app().unwrap().name, "api");
        assert!(matches!(d.key(press(KeyCode::Down)), KeyOutcome::Redraw));
        assert_eq!(d.selected_app().unwrap().name, "worker");
        // The last app: no further.
        assert!(matches!(
            d.key(press(KeyCode::Char('j'))),
            KeyOutcome::Nothing
        ));
        // A new app listed first: the selection stays on `worker`.
        let mut rows = vec![process("aaa", 0, Status::Online, 0.0, 0)];
        rows.extend(d.processes.clone());
        d.update(rows);
        assert_eq!(d.selected_app().unwrap().name, "worker");
        // `worker` deleted: the selection stays in range.
        d.update(vec![process("aaa", 0, Status::Online, 0.0, 0)]);
        assert_eq!(d.selected_app().unwrap().name, "aaa");
        assert!(matches!(
            d.key(press(KeyCode::Char('k'))),
            KeyOutcome::Nothing
        ));
    }

    #[test]
    fn keys_produce_requests_for_the_selected_app() {
        let mut d = two_apps();
        d.key(press(KeyCode::Down));
        let act = |d: &mut Dashboard, c: char| match d.key(press(KeyCode::Char(c))) {
            KeyOutcome::Act(a) => a,
            other => panic!("{c}: {other:?}"),
        };
        let a = act(&mut d, 'r');
        assert!(matches!(a.request, Request::Restart { ref target } if target == "worker"));
        assert_eq!(a.label, "restart worker");
        assert_eq!(d.status, Some((Tone::Busy, "restart worker…".into())));
        for c in ['R', 'l'] {
            let a = act(&mut d, c);
            assert!(matches!(a.request, Request::Reload { ref target } if target == "worker"));
        }
        assert!(
            matches!(act(&mut d, 's').request, Request::Stop { ref target } if target == "worker")
        );
        let a = act(&mut d, '+');
        assert!(
            matches!(a.request, Request::Scale { ref name, to: ScaleTo::Add(1) } if name == "worker")
        );
        assert_eq!(a.label, "scale worker +1");
        assert!(matches!(
            act(&mut d, '-').request,
            Request::Scale { ref name, to: ScaleTo::Remove(1) } if name == "worker"
        ));
    }

    #[test]
    fn quit_keys_and_no_action_without_apps() {
        let mut d = Dashboard::new();
        assert!(matches!(
            d.key(press(KeyCode::Char('r'))),
            KeyOutcome::Nothing
        ));
        assert!(matches!(d.key(press(KeyCode::Char('q'))), KeyOutcome::Quit));
        assert!(matches!(d.key(press(KeyCode::Esc)), KeyOutcome::Quit));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert!(matches!(d.key(ctrl_c), KeyOutcome::Quit));
        assert!(matches!(
            d.key(press(KeyCode::Char('c'))),
            KeyOutcome::Nothing
        ));
        d.update(vec![process("api", 0, Status::Online, 0.0, 0)]);
        let ctrl_r = KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL);
        assert!(matches!(d.key(ctrl_r), KeyOutcome::Nothing));
        let shift_r = KeyEvent::new(KeyCode::Char('R'), KeyModifiers::SHIFT);
        assert!(matches!(d.key(shift_r), KeyOutcome::Act(_)));
    }
}
