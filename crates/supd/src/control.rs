//! The control socket: accepts `supctl` connections and answers requests,
//! within a budget no client can exhaust.
//!
//! A peer whose uid is neither ours nor root gets one error frame naming
//! the reason, and is closed before a byte is read. Connections are capped
//! ([`budget`]), and each is served by its own task ([`connection`]). When
//! the daemon runs out of descriptors, accept gives up a reserve descriptor
//! to take the pending connection, tells it why, and closes it: accept
//! never spins on EMFILE, and the client hears the reason instead of
//! hanging in the backlog.
//!
//! Each request is then answered by [`dispatch`], one function per request
//! in the modules beside it.

pub mod budget;
mod connection;
mod dispatch;
mod operate;
mod queries;
mod saved;
mod start;

use std::fs::File;
use std::io;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::time::Instant;

pub use budget::Limits;
use connection::Connections;
pub use connection::return_large_blocks;
pub use dispatch::handle;
pub use saved::resurrect;

use crate::registry::Registry;

/// How often a refusal is logged at most (a flood of them is one line).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections until the process exits. A `kill` request answered
/// successfully flips `shutdown`.
pub async fn serve(
    listener: UnixListener,
    registry: Registry,
    shutdown: watch::Sender<bool>,
    limits: Limits,
) {
    let me = nix::unistd::getuid().as_raw();
    tracing::info!(
        connections = limits.connections,
        buffered = limits.buffered,
        idle = ?limits.idle,
        "control socket budget"
    );
    let connections = Connections::new(limits);
    let mut reserve = Reserve::open();
    let mut refusals = Refusals::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if is_out_of_descriptors(&e) => {
                let message = format!("the daemon is out of descriptors ({e}); try again");
                refusals.note(&message);
                if !reserve.refuse_pending(&listener, message).await {
                    // No reserve to give up: wait for descriptors to come back.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == me || cred.uid() == 0 => {}
            Ok(cred) => {
                let uid = cred.uid();
                tracing::warn!(uid, "refused a connection from another user");
                refuse(
                    stream,
                    format!("refused: uid {uid} is neither the daemon's ({me}) nor root"),
                );
                continue;
            }
            Err(e) => {
                tracing::warn!("cannot read peer credentials: {e}");
                continue;
            }
        }
        match connections.admit() {
            Ok((admitted, evicted)) => {
                let serving =
                    connection::serve(stream, admitted, registry.clone(), shutdown.clone());
                tokio::spawn(serving);
                // The cap bounds descriptors: the next accept waits until the
                // connection that made room has really closed.
                if let Some(evicted) = evicted {
                    evicted.closed().await;
                }
            }
            Err(message) => {
                refusals.note(&message);
                refuse(stream, message);
            }
        }
    }
}

/// Tells a refused peer why, without waiting on it, and closes it: the
/// descriptor is not held past the refusal (the cap counts descriptors).
fn refuse(stream: UnixStream, message: String) {
    let response = supd_proto::Response::Error { message };
    if let Ok(frame) = supd_proto::frame::encode(&response) {
        // A fresh socket's buffer takes a short frame whole.
        let _ = stream.try_write(&frame);
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// One descriptor held back for the moment accept finds none left.
struct Reserve(Option<File>);

impl Reserve {
    fn open() -> Reserve {
        Reserve(File::open("/dev/null").ok())
    }

    /// Gives up the reserve to accept the pending connection, refuses it
    /// with `message`, then takes the reserve back. False if there was no
    /// reserve (one is taken again if descriptors came back) or no
    /// connection.
    async fn refuse_pending(&mut self, listener: &UnixListener, message: String) -> bool {
        if self.0.take().is_none() {
            *self = Reserve::open();
            return false;
        }
        let accepted = tokio::time::timeout(Duration::from_millis(10), listener.accept()).await;
        let refused = match accepted {
            Ok(Ok((stream, _))) => {
                refuse(stream, message);
                true
            }
            _ => false,
        };
        *self = Reserve::open();
        refused
    }
}

/// Refusals, logged at most every [`WARN_EVERY`] with how many there were.
#[derive(Default)]
struct Refusals {
    last: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn note(&mut self, message: &str) {
        self.unlogged += 1;
        if self.last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                count = self.unlogged,
                "refused control connections: {message}"
            );
            self.last = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}
