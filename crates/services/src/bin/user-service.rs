//! user-service: login and "who am I", with stateless HS256 tokens.
//!
//! A stand-in: any non-empty user name with a non-empty password logs in.
//! What it does demonstrate is statelessness: every instance signs and
//! verifies with the same `JWT_SECRET`, so it runs in cluster mode and a
//! token from one instance is accepted by every other.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use supd_services::identity::Identity;
use supd_services::token::Signer;
use supd_services::{ApiError, ApiJson, Ctx, Service, env};

/// The secret used when `JWT_SECRET` is unset: fine for a laptop, never for
/// a deployment (a warning is logged).
const DEV_SECRET: &str = "supd-dev-secret-change-me";

/// Body of the login routes.
#[derive(Debug, Deserialize)]
struct Login {
    /// Any non-empty name.
    username: String,
    /// Any non-empty password (not checked: this is a stand-in).
    password: String,
}

/// Shared handler state.
#[derive(Debug)]
struct Auth {
    /// Signs and verifies tokens.
    signer: Signer,
    /// How long a token is valid (`JWT_TTL_SECS`).
    ttl: Duration,
    /// For the `instance` field of `/users/me`.
    identity: Arc<Identity>,
}

fn main() -> ExitCode {
    supd_services::run(
        Service {
            name: "user-service",
            default_port: 30001,
        },
        build,
    )
}

/// The routes.
async fn build(ctx: Ctx) -> anyhow::Result<Router> {
    let secret = env::var("JWT_SECRET").unwrap_or_else(|| {
        println!("user-service: JWT_SECRET is not set, using the built-in development secret");
        DEV_SECRET.to_owned()
    });
    let ttl = Duration::from_secs(env::parse_or("JWT_TTL_SECS", 3600)?);
    let auth = Auth {
        signer: Signer::new(secret),
        ttl,
        identity: ctx.identity,
    };
    Ok(Router::new()
        .route("/auth/login", post(login))
        .route("/users/login", post(login))
        .route("/users/me", get(me))
        .with_state(Arc::new(auth)))
}

/// `POST /auth/login` and `POST /users/login`: `{"token"}` for any non-empty
/// user name and password.
async fn login(
    State(auth): State<Arc<Auth>>,
    ApiJson(login): ApiJson<Login>,
) -> Result<Json<Value>, ApiError> {
    let username = login.username.trim();
    if username.is_empty() || login.password.is_empty() {
        return Err(ApiError::unauthorized("username and password are required"));
    }
    let token = auth.signer.issue(username, auth.ttl, SystemTime::now());
    println!("User {username} logged in ({})", auth.identity.instance);
    Ok(Json(
        json!({ "token": token, "token_type": "Bearer", "expires_in": auth.ttl.as_secs() }),
    ))
}

/// `GET /users/me` with `Authorization: Bearer <token>`.
async fn me(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let claims = auth
        .signer
        .verify(token, SystemTime::now())
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    Ok(Json(
        json!({ "username": claims.sub, "instance": auth.identity.instance }),
    ))
}
