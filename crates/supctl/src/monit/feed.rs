//! The two background threads that talk to the daemon, so that the screen
//! never waits on the socket.
//!
//! The poller asks for the process table (and where the log files are) every
//! interval, on one connection that it keeps, and reconnects when the daemon
//! went away (a `supctl update`, a restart). It never starts a daemon: one
//! that was killed on purpose stays dead, and the screen says so.
//!
//! The worker runs the user's actions one after another on connections of
//! its own, so a reload that takes a minute doesn't stop the table from
//! refreshing, and passes their progress and outcome back.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use supd_proto::{AppLogs, Home, ProcessInfo, Request, Response};

use super::state::Action;
use crate::client::Client;

/// What the threads tell the event loop.
#[derive(Debug)]
pub enum Feed {
    /// A fresh sample, or why none could be taken.
    Sample(Result<Sample, String>),
    /// A step of the running action, after its label (a reload reports each instance).
    Progress(String),
    /// An action finished: its label, and the daemon's error text if it failed.
    Done {
        /// What the action was, e.g. `reload api-gateway`.
        label: String,
        /// `Err` carries the daemon's reason.
        result: Result<(), String>,
    },
}

/// One look at the daemon.
#[derive(Debug)]
pub struct Sample {
    /// The process table.
    pub processes: Vec<ProcessInfo>,
    /// Where every app's log files are.
    pub logs: Vec<AppLogs>,
}

/// Starts the poller with an open connection. A send on the returned
/// channel asks for a sample now (after an action); dropping it, or the
/// event loop dropping its receiver, ends the thread.
pub fn spawn_poller(
    home: Home,
    client: Client,
    interval: Duration,
    feed: Sender<Feed>,
) -> Sender<()> {
    let (nudge, nudged) = std::sync::mpsc::channel();
    std::thread::spawn(move || poller(&home, Some(client), interval, &feed, &nudged));
    nudge
}

fn poller(
    home: &Home,
    mut client: Option<Client>,
    interval: Duration,
    feed: &Sender<Feed>,
    nudged: &Receiver<()>,
) {
    loop {
        if feed.send(Feed::Sample(sample(home, &mut client))).is_err() {
            return;
        }
        match nudged.recv_timeout(interval) {
            Ok(()) => while nudged.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// One sample. A kept connection that fails is dropped and a fresh one
/// tried at once: that is how a restarted daemon is picked up.
fn sample(home: &Home, client: &mut Option<Client>) -> Result<Sample, String> {
    if let Some(c) = client {
        match ask(c) {
            Ok(sample) => return Ok(sample),
            Err(_) => *client = None,
        }
    }
    let mut fresh = connect(home)?;
    let result = ask(&mut fresh);
    if result.is_ok() {
        *client = Some(fresh);
    }
    result
}

/// A connection to the running daemon, or why there is none.
fn connect(home: &Home) -> Result<Client, String> {
    match Client::connect_existing(home) {
        Ok(Some(client)) => Ok(client),
        Ok(None) => Err(format!(
            "supd is not running (no daemon at {})",
            home.socket().display()
        )),
        Err(e) => Err(format!("{e:#}")),
    }
}

fn ask(client: &mut Client) -> Result<Sample, String> {
    let processes = match client
        .request(&Request::List)
        .map_err(|e| format!("{e:#}"))?
    {
        Response::List { processes } => processes,
        other => return Err(format!("unexpected answer from supd: {other:?}")),
    };
    let logs = match client.request(&Request::LogFiles {
        target: "all".into(),
    }) {
        Ok(Response::LogFiles { apps }) => apps,
        // An app deleted between the two requests, say: paths can wait a tick.
        _ => Vec::new(),
    };
    Ok(Sample { processes, logs })
}

/// Starts the worker. It runs each [`Action`] sent on the returned channel
/// and then nudges the poller, so the table shows the effect at once.
pub fn spawn_worker(home: Home, feed: Sender<Feed>, nudge: Sender<()>) -> Sender<Action> {
    let (actions, queue) = std::sync::mpsc::channel::<Action>();
    std::thread::spawn(move || {
        for action in queue {
            let result = run(&home, &action, &feed);
            let _ = nudge.send(());
            if feed
                .send(Feed::Done {
                    label: action.label,
                    result,
                })
                .is_err()
            {
                return;
            }
        }
    });
    actions
}

/// Runs one request on a connection of its own: actions come at the pace
/// of key presses, and a fresh connection never meets a daemon that was
/// restarted since the last one.
fn run(home: &Home, action: &Action, feed: &Sender<Feed>) -> Result<(), String> {
    let progress = |step: &str| {
        let _ = feed.send(Feed::Progress(format!("{}: {step}", action.label)));
    };
    match connect(home)?.request_with_progress(&action.request, progress) {
        Ok(Response::Done { .. }) => Ok(()),
        Ok(other) => Err(format!("unexpected answer from supd: {other:?}")),
        Err(e) => Err(format!("{e:#}")),
    }
}
