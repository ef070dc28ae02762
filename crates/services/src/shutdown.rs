//! Graceful shutdown: the signal that starts it, and the handle long-lived
//! tasks use to hear about it and to say they have finished.
//!
//! The pattern is mini-redis's: a `watch` channel tells every task to stop;
//! every task holds a clone of an `mpsc::Sender<()>`, and the server waits
//! until `recv()` returns `None` — everyone finished. HTTP requests are
//! drained by axum itself; this covers what axum does not track: WebSocket
//! sessions (upgraded connections leave axum's bookkeeping) and timed jobs.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

/// Installs the SIGINT and SIGTERM handlers now, and returns a future that
/// resolves with the name of the first one received.
///
/// Call it before telling anyone we are ready: a signal that arrives before
/// the handlers exist would kill the process instead of draining it.
/// supd's default `kill_signal` is SIGINT (as PM2's); systemd and `kill`
/// send SIGTERM. Both mean the same here.
///
/// # Panics
/// When the signal handlers cannot be installed (no tokio runtime with
/// signals enabled), which is a programming error.
pub fn signal_received() -> impl std::future::Future<Output = &'static str> {
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    async move {
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
}

/// A long-lived task's view of shutdown. Clone one per task; the server
/// waits for every clone to be dropped before it exits.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Becomes `true` when shutdown starts.
    stopping: watch::Receiver<bool>,
    /// Never sent on: dropping the last clone is the "all done" message.
    _done: mpsc::Sender<()>,
}

impl Shutdown {
    /// Whether shutdown has started.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once shutdown has started (at once if it already has).
    pub async fn stopping(&mut self) {
        // An error means the trigger was dropped, which also means "stop".
        let _ = self.stopping.wait_for(|stopping| *stopping).await;
    }
}

/// The server's side of the `watch`: starts shutdown.
#[derive(Debug)]
pub struct Trigger {
    /// Flipped to `true` to start shutdown.
    stopping: watch::Sender<bool>,
}

/// The server's side of the `mpsc`: hears that every task has finished.
#[derive(Debug)]
pub struct Finished {
    /// Yields `None` once every [`Shutdown`] clone is gone.
    done: mpsc::Receiver<()>,
}

/// A connected trigger, completion and first task handle.
pub fn channel() -> (Trigger, Finished, Shutdown) {
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel(1);
    (
        Trigger {
            stopping: stopping_tx,
        },
        Finished { done: done_rx },
        Shutdown {
            stopping: stopping_rx,
            _done: done_tx,
        },
    )
}

impl Trigger {
    /// Tells every task to stop.
    pub fn start(&self) {
        self.stopping.send_replace(true);
    }
}

impl Finished {
    /// Waits until every [`Shutdown`] clone has been dropped.
    pub async fn wait(&mut self) {
        while self.done.recv().await.is_some() {}
    }
}
