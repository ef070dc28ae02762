//! The accept loop: one task per connection, and a shutdown that never
//! drops a client that has connected.
//!
//! axum's own graceful shutdown closes connections that are open but have
//! not sent a request yet. Behind supd's held socket that loses requests
//! during a reload: a client connects (the kernel queues it, the old worker
//! accepts it), then the old worker is told to stop and closes it unread. So
//! here, when shutdown starts, a connection that has not yet sent its first
//! request gets a moment to send it and is served before it is closed.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tower::Service;

use crate::shutdown::Shutdown;

/// How long a connection opened before shutdown may take to send its first
/// request (clients send it at once; this bounds a silent one).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

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

/// Serves one connection; on shutdown, finishes the request in flight (or
/// the first one, if it has not arrived yet) and closes.
async fn connection(stream: TcpStream, app: Router, mut shutdown: Shutdown) {
    let first_request = Arc::new(Notify::new());
    let seen = first_request.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        seen.notify_one();
        let mut app = app.clone();
        async move { app.call(request).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = shutdown.stopping() => {}
    }
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = tokio::time::timeout(FIRST_REQUEST_GRACE, first_request.notified()) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
