//! The accept loop: one task per connection, and the drain every
//! supd-aware server follows (docs/cluster.md, "The drain").
//!
//! On the stop signal the loop stops accepting (supd's held socket keeps
//! queueing for the other instances) and each connection drains:
//! - a request in flight finishes, and its response says `Connection: close`;
//! - a request that arrives on an open connection during the drain is
//!   served, with `Connection: close`, and the connection closes after it;
//! - a connection that stays idle is closed only after [`IDLE_GRACE`].
//!
//! Closing an idle keep-alive connection at once (what hyper's and axum's
//! graceful shutdown do) fails requests: the client may already have sent
//! its next one, and a client that does not retry (wrk, most HTTP
//! libraries for a POST) sees a connection closed under it. The header
//! matters too: hyper closes after the last response of a connection whose
//! keep-alive it disabled, but does not say so, and a client reads that
//! close as an error; `Connection: close` tells it to reconnect.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

use crate::shutdown::Shutdown;

/// How long a connection may stay idle once the drain has started: enough
/// for a client that is using the connection to send its next request,
/// short enough that the process drains well inside supd's default
/// `kill_timeout` (1.6 s, PM2's) — 1 s plus the last responses.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Accepts until shutdown starts; each connection task holds a [`Shutdown`]
/// clone, so the server's wait for finished tasks covers them too.
pub async fn serve(listener: TcpListener, app: Router, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, app.clone(), shutdown.clone()));
                }
                // EMFILE and friends: breathe, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            () = shutdown.stopping() => return,
        }
    }
}

/// Serves one connection until the client closes it, or, once shutdown has
/// started, until its next response (which says `Connection: close`) or
/// [`IDLE_GRACE`] of idleness.
async fn connection(stream: TcpStream, app: Router, mut shutdown: Shutdown) {
    let draining = shutdown.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut app = app.clone();
        let draining = draining.clone();
        async move {
            let mut response = app.call(request).await?;
            // Asked when the response is ready, so a request in flight when
            // the drain starts closes its connection too.
            if draining.is_stopping() {
                close_after(&mut response);
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = shutdown.stopping() => {}
    }
    // Draining: the next response closes the connection (see above).
    if tokio::time::timeout(IDLE_GRACE, conn.as_mut())
        .await
        .is_ok()
    {
        return;
    }
    // Idle all along (or a request arrived at the last moment: hyper then
    // finishes it before closing).
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Marks `response` as the connection's last: hyper closes the connection
/// once it is written, and the client knows to open a new one. A protocol
/// switch (WebSocket) keeps its own `Connection: upgrade`.
fn close_after<B>(response: &mut Response<B>) {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_response_says_connection_close_but_an_upgrade_keeps_its_header() {
        let cases = [
            (StatusCode::OK, None, Some("close")),
            (StatusCode::NOT_FOUND, Some("keep-alive"), Some("close")),
            (
                StatusCode::SWITCHING_PROTOCOLS,
                Some("upgrade"),
                Some("upgrade"),
            ),
        ];
        for (status, before, after) in cases {
            let mut response = Response::builder().status(status);
            if let Some(value) = before {
                response = response.header(header::CONNECTION, value);
            }
            let mut response = response.body(()).unwrap();
            close_after(&mut response);
            let connection = response.headers().get(header::CONNECTION);
            assert_eq!(connection.map(|v| v.to_str().unwrap()), after, "{status}");
        }
    }
}
