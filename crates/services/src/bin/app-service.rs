//! app-service: receives app packages and keeps each in a local temp file.
//!
//! The upload is streamed to disk (never held in memory) while its size and
//! SHA-256 are computed. The files live as long as the process: they are
//! removed when the service stops, like its in-memory index of them. That
//! local state is why it runs as a single fork-mode instance.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use supd_services::{ApiError, Ctx, Service, env};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt as _;

/// An uploaded package, as the API shows it.
#[derive(Debug, Clone, Serialize)]
struct App {
    /// Unique id.
    id: String,
    /// Size in bytes.
    size: u64,
    /// Hex SHA-256 of the content.
    sha256: String,
}

/// Uploads and where they are kept.
#[derive(Debug)]
struct Store {
    /// The folder for temp files (`APP_STORAGE_DIR`).
    dir: PathBuf,
    /// The largest accepted upload (`APP_MAX_UPLOAD_BYTES`).
    max_bytes: u64,
    /// Uploads by id, each with its file (deleted when dropped).
    apps: Mutex<HashMap<String, (App, TempPath)>>,
}

fn main() -> ExitCode {
    supd_services::run(
        Service {
            name: "app-service",
            default_port: 30003,
        },
        build,
    )
}

/// The routes.
async fn build(_ctx: Ctx) -> anyhow::Result<Router> {
    let dir = env::var("APP_STORAGE_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let max_bytes = env::parse_or("APP_MAX_UPLOAD_BYTES", 512 * 1024 * 1024)?;
    println!(
        "app-service stores uploads in {} (at most {max_bytes} bytes each)",
        dir.display()
    );
    let store = Store {
        dir,
        max_bytes,
        apps: Mutex::default(),
    };
    Ok(Router::new()
        .route("/apps", get(list).post(upload))
        .route("/apps/{id}", get(show))
        .with_state(Arc::new(store)))
}

/// `POST /apps`: any bytes; 201 with id, size and SHA-256. A failed or
/// aborted upload leaves no file behind.
async fn upload(
    State(store): State<Arc<Store>>,
    mut body: Body,
) -> Result<(StatusCode, Json<App>), ApiError> {
    let io = |e: std::io::Error| ApiError::internal(format!("cannot store the upload: {e}"));
    let (file, path) = tempfile::Builder::new()
        .prefix("supd-app-")
        .suffix(".upload")
        .tempfile_in(&store.dir)
        .map_err(io)?
        .into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = next_chunk(&mut body).await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > store.max_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("uploads are limited to {} bytes", store.max_bytes),
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    let app = App {
        id: uuid::Uuid::new_v4().to_string(),
        size,
        sha256: hex(&hasher.finalize()),
    };
    println!(
        "App {} stored: {size} bytes, sha256 {} at {}",
        app.id,
        app.sha256,
        path.display()
    );
    store
        .apps
        .lock()
        .expect("app store lock")
        .insert(app.id.clone(), (app.clone(), path));
    Ok((StatusCode::CREATED, Json(app)))
}

/// The next data chunk of `body` (trailers are skipped); `None` at the end.
/// Reads through `http_body` directly to spare a `futures` dependency.
async fn next_chunk(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
    use axum::body::HttpBody as _;
    loop {
        let frame =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Err(e) => return Some(Err(e)),
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
        }
    }
}

/// `GET /apps`: every upload.
async fn list(State(store): State<Arc<Store>>) -> Json<Vec<App>> {
    Json(
        store
            .apps
            .lock()
            .expect("app store lock")
            .values()
            .map(|(app, _)| app.clone())
            .collect(),
    )
}

/// `GET /apps/{id}`.
async fn show(
    State(store): State<Arc<Store>>,
    Path(id): Path<String>,
) -> Result<Json<App>, ApiError> {
    let apps = store.apps.lock().expect("app store lock");
    apps.get(&id)
        .map(|(app, _)| Json(app.clone()))
        .ok_or_else(|| ApiError::not_found(format!("no app {id}")))
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
