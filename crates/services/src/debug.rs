//! Test-only routes, mounted when `SERVICE_DEBUG_ROUTES=1`.
//!
//! `GET /debug/slow?ms=N` answers after N milliseconds: the in-flight request
//! that proves a SIGTERM drains instead of dropping, and the kind of slow
//! request a reload-under-load test wants in the mix. Off by default so a
//! production deployment exposes nothing that can hold a worker on purpose.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::identity::Identity;

/// The longest sleep `/debug/slow` accepts: one minute.
const MAX_SLOW_MS: u64 = 60_000;

/// Query of `/debug/slow`.
#[derive(Debug, Deserialize)]
struct Slow {
    /// How long to wait before answering, in milliseconds (default 1000).
    ms: Option<u64>,
}

/// The debug routes.
pub fn routes(identity: Arc<Identity>) -> Router {
    Router::new()
        .route("/debug/slow", get(slow))
        .with_state(identity)
}

/// `GET /debug/slow?ms=N`.
async fn slow(State(identity): State<Arc<Identity>>, Query(q): Query<Slow>) -> Json<Value> {
    let ms = q.ms.unwrap_or(1000).min(MAX_SLOW_MS);
    // Tests wait for this line to know the request is in flight.
    println!("debug: slow request started ({ms} ms)");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms, "instance": identity.instance, "pid": identity.pid }))
}
