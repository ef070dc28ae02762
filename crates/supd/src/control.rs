//! The control socket: accepts `supctl` connections and answers requests.
//!
//! Each connection gets its own task, so idle or slow clients cost one
//! parked task and never delay anyone else. A peer whose uid is neither ours
//! nor root is dropped before a byte is read. A malformed request gets an
//! error reply; an oversized or truncated frame closes the connection.

use supd_proto::frame::{read_frame_bytes_async, write_frame_async};
use supd_proto::{FrameError, Request, Response};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

use crate::registry::Registry;

/// Accepts connections until the process exits. A `kill` request answered
/// successfully flips `shutdown`.
pub async fn serve(listener: UnixListener, registry: Registry, shutdown: watch::Sender<bool>) {
    let me = nix::unistd::getuid().as_raw();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: log, breathe, keep serving.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == me || cred.uid() == 0 => {}
            Ok(cred) => {
                tracing::warn!(uid = cred.uid(), "refused a connection from another user");
                continue;
            }
            Err(e) => {
                tracing::warn!("cannot read peer credentials: {e}");
                continue;
            }
        }
        tokio::spawn(connection(stream, registry.clone(), shutdown.clone()));
    }
}

/// Serves one connection: request, response, until the peer hangs up.
async fn connection(mut stream: UnixStream, registry: Registry, shutdown: watch::Sender<bool>) {
    loop {
        let bytes = match read_frame_bytes_async(&mut stream).await {
            Ok(bytes) => bytes,
            Err(FrameError::Closed) => return,
            Err(e @ FrameError::TooLarge(_)) => {
                let _ = write_frame_async(
                    &mut stream,
                    &Response::Error {
                        message: e.to_string(),
                    },
                )
                .await;
                return;
            }
            Err(e) => {
                tracing::debug!("connection dropped: {e}");
                return;
            }
        };
        let (response, kill, client_gone) = match serde_json::from_slice::<Request>(&bytes) {
            Ok(request) => {
                let kill = matches!(request, Request::Kill);
                let (response, client_gone) = answer(&mut stream, &registry, request).await;
                (response, kill, client_gone)
            }
            Err(e) => (
                Response::Error {
                    message: format!("malformed request: {e}"),
                },
                false,
                false,
            ),
        };
        let written = !client_gone && write_frame_async(&mut stream, &response).await.is_ok();
        // A kill that went through ends the daemon, whether or not its
        // client stayed to hear the answer.
        if kill && !matches!(response, Response::Error { .. }) {
            shutdown.send_replace(true);
            return;
        }
        if !written {
            return;
        }
    }
}

/// Runs one request in its own task (so it completes even if the client
/// goes away), writing its progress lines as they come. The response, and
/// whether the client is gone.
async fn answer(
    stream: &mut UnixStream,
    registry: &Registry,
    request: Request,
) -> (Response, bool) {
    let (progress, mut steps) = mpsc::unbounded_channel();
    let registry = registry.clone();
    let mut task = tokio::spawn(async move { registry.handle(request, &progress).await });
    let mut client_gone = false;
    let response = loop {
        tokio::select! {
            Some(message) = steps.recv() => {
                if !client_gone {
                    client_gone = write_frame_async(stream, &Response::Progress { message }).await.is_err();
                }
            }
            done = &mut task => break done.unwrap_or_else(|e| Response::Error { message: format!("internal error: {e}") }),
        }
    };
    while let Ok(message) = steps.try_recv() {
        if !client_gone {
            client_gone = write_frame_async(stream, &Response::Progress { message })
                .await
                .is_err();
        }
    }
    (response, client_gone)
}
