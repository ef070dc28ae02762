//! Who this process is: service name, instance and pid, as `GET /health`
//! reports them.
//!
//! The instance number is what lets a test (or an operator) see which
//! instance of a cluster-mode app answered a request.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::env;

/// The identity of this process, fixed at start-up.
#[derive(Debug)]
pub struct Identity {
    /// The service name (`device-service`...).
    pub name: &'static str,
    /// `instance-<N>`: N from `INSTANCE_ID`, else `NODE_APP_INSTANCE`
    /// (PM2's name for it), else 0.
    pub instance: String,
    /// Our own process id.
    pub pid: u32,
    /// When the process started, for `uptime_ms`.
    pub started: Instant,
}

impl Identity {
    /// Reads the instance number from the environment.
    pub fn from_env(name: &'static str) -> Self {
        let number = env::var("INSTANCE_ID")
            .or_else(|| env::var("NODE_APP_INSTANCE"))
            .map_or_else(|| "0".to_owned(), |n| n.trim().to_owned());
        Self {
            name,
            instance: format!("instance-{number}"),
            pid: std::process::id(),
            started: Instant::now(),
        }
    }

    /// The body of `GET /health`.
    pub fn health(&self) -> Value {
        json!({
            "status": "ok",
            "service": self.name,
            "instance": self.instance,
            "pid": self.pid,
            "uptime_ms": u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// `GET /health`: 200 with [`Identity::health`].
pub async fn health(State(identity): State<Arc<Identity>>) -> Json<Value> {
    Json(identity.health())
}
