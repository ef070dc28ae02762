//! notification-service: WebSocket connections per user, and an HTTP route
//! that pushes a message to every open connection of a user.
//!
//! Run it as one instance only (`max_instances = 1`): the connections live in
//! this process's memory, and a message sent through another instance would
//! find none of them.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use supd_services::shutdown::Shutdown;
use supd_services::{ApiError, ApiJson, Ctx, Service};
use tokio::sync::mpsc;

/// Query of the WebSocket route.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscribe {
    /// Whose notifications this connection receives.
    user_id: Option<String>,
}

/// Body of `POST /notifications/send`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Send {
    /// The recipient.
    user_id: String,
    /// Usually a string; any JSON value is passed through.
    message: Value,
}

/// Open connections, and what the WebSocket tasks need.
#[derive(Debug)]
struct Hub {
    /// Per user, per connection: the queue of frames to send.
    sockets: Mutex<HashMap<String, HashMap<u64, mpsc::UnboundedSender<String>>>>,
    /// Connection ids.
    next_id: AtomicU64,
    /// Tells the sessions to close on shutdown.
    shutdown: Shutdown,
}

fn main() -> ExitCode {
    supd_services::run(
        Service {
            name: "notification-service",
            default_port: 30006,
        },
        build,
    )
}

/// The routes.
async fn build(ctx: Ctx) -> anyhow::Result<Router> {
    let hub = Arc::new(Hub {
        sockets: Mutex::default(),
        next_id: AtomicU64::new(1),
        shutdown: ctx.shutdown,
    });
    Ok(Router::new()
        .route("/notifications", get(subscribe))
        .route("/notifications/send", post(send))
        .with_state(hub))
}

/// `GET /notifications?userId=U` with a WebSocket upgrade.
async fn subscribe(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<Subscribe>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let user = q
        .user_id
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("userId query parameter is required"))?;
    Ok(upgrade.on_upgrade(move |socket| session(hub, user, socket)))
}

/// One WebSocket connection: registered while open, fed from its queue.
async fn session(hub: Arc<Hub>, user: String, mut socket: WebSocket) {
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let open = {
        let mut sockets = hub.sockets.lock().expect("hub lock");
        let mine = sockets.entry(user.clone()).or_default();
        mine.insert(id, tx);
        mine.len()
    };
    println!("WebSocket connected: user {user} (connection {id}, {open} open for this user)");
    let mut shutdown = hub.shutdown.clone();
    loop {
        tokio::select! {
            Some(frame) = rx.recv() => {
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                // Pings are answered by the library; text from the client is
                // not part of the protocol and is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            () = shutdown.stopping() => {
                let frame = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    {
        let mut sockets = hub.sockets.lock().expect("hub lock");
        if let Some(mine) = sockets.get_mut(&user) {
            mine.remove(&id);
            if mine.is_empty() {
                sockets.remove(&user);
            }
        }
    }
    println!("WebSocket disconnected: user {user} (connection {id})");
}

/// `POST /notifications/send`: queues the message on every open connection
/// of the user and answers how many there were.
async fn send(
    State(hub): State<Arc<Hub>>,
    ApiJson(send): ApiJson<Send>,
) -> Result<Json<Value>, ApiError> {
    if send.user_id.trim().is_empty() {
        return Err(ApiError::bad_request("userId must not be empty"));
    }
    let frame = json!({ "userId": send.user_id, "message": send.message }).to_string();
    let delivered = {
        let sockets = hub.sockets.lock().expect("hub lock");
        sockets.get(&send.user_id).map_or(0, |mine| {
            mine.values()
                .filter(|tx| tx.send(frame.clone()).is_ok())
                .count()
        })
    };
    println!(
        "Notification for user {}: delivered to {delivered} connection(s)",
        send.user_id
    );
    Ok(Json(json!({ "delivered": delivered })))
}
