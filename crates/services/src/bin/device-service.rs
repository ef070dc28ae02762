//! device-service: creates cloud-phone devices and allocates each an ADB and
//! a WebRTC port from an in-memory set.
//!
//! Run it as one instance only (`max_instances = 1`): a second process would
//! have its own set and hand out the same ports.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use supd_services::ports::{PortPair, PortPool};
use supd_services::{ApiError, ApiJson, Ctx, Service, env};

/// A device, as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Device {
    /// Unique id.
    id: String,
    /// Owner.
    user_id: String,
    /// Display name.
    name: String,
    /// Allocated ADB port.
    adb_port: u16,
    /// Allocated WebRTC port.
    webrtc_port: u16,
}

/// Body of `POST /devices`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewDevice {
    /// Owner (required, non-empty).
    user_id: String,
    /// Display name (required, non-empty).
    name: String,
}

/// Query of `GET /devices`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    /// Only this user's devices.
    user_id: Option<String>,
}

/// Devices and the pool their ports come from, under one lock so an
/// allocation and its record can never disagree.
#[derive(Debug)]
struct Registry {
    /// Free and allocated port pairs.
    pool: PortPool,
    /// Devices by id.
    devices: BTreeMap<String, Device>,
}

/// Shared handler state.
type Shared = Arc<Mutex<Registry>>;

fn main() -> ExitCode {
    supd_services::run(
        Service {
            name: "device-service",
            default_port: 30002,
        },
        build,
    )
}

/// The routes, with a pool configured from `ADB_PORT_START`,
/// `WEBRTC_PORT_START` and `MAX_DEVICES`.
async fn build(_ctx: Ctx) -> anyhow::Result<Router> {
    let adb = env::parse_or("ADB_PORT_START", 5555)?;
    let webrtc = env::parse_or("WEBRTC_PORT_START", 8080)?;
    let max = env::parse_or("MAX_DEVICES", 1000)?;
    println!(
        "device-service port pool: ADB from {adb}, WebRTC from {webrtc}, {max} devices at most"
    );
    let registry = Registry {
        pool: PortPool::new(adb, webrtc, max),
        devices: BTreeMap::new(),
    };
    Ok(Router::new()
        .route("/devices", get(list).post(create))
        .route("/devices/{id}", get(show).delete(remove))
        .with_state(Arc::new(Mutex::new(registry))))
}

/// `POST /devices`: 201 with the new device and its ports.
async fn create(
    State(registry): State<Shared>,
    ApiJson(new): ApiJson<NewDevice>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    if new.user_id.trim().is_empty() || new.name.trim().is_empty() {
        return Err(ApiError::bad_request("userId and name must not be empty"));
    }
    let mut registry = registry.lock().expect("device registry lock");
    let PortPair { adb, webrtc } = registry
        .pool
        .allocate()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no free device ports"))?;
    let device = Device {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: new.user_id,
        name: new.name,
        adb_port: adb,
        webrtc_port: webrtc,
    };
    registry.devices.insert(device.id.clone(), device.clone());
    println!("Allocated ports: ADB={adb}, WebRTC={webrtc}");
    println!(
        "device {} created for user {} ({} in use)",
        device.id,
        device.user_id,
        registry.pool.in_use()
    );
    Ok((StatusCode::CREATED, Json(device)))
}

/// `GET /devices[?userId=U]`: every device (of one user).
async fn list(State(registry): State<Shared>, Query(filter): Query<Filter>) -> Json<Vec<Device>> {
    let registry = registry.lock().expect("device registry lock");
    Json(
        registry
            .devices
            .values()
            .filter(|d| filter.user_id.as_ref().is_none_or(|u| *u == d.user_id))
            .cloned()
            .collect(),
    )
}

/// `GET /devices/{id}`.
async fn show(
    State(registry): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    let registry = registry.lock().expect("device registry lock");
    registry
        .devices
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| no_device(&id))
}

/// `DELETE /devices/{id}`: 204, and the ports go back to the pool.
async fn remove(
    State(registry): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut registry = registry.lock().expect("device registry lock");
    let device = registry.devices.remove(&id).ok_or_else(|| no_device(&id))?;
    registry.pool.release(PortPair {
        adb: device.adb_port,
        webrtc: device.webrtc_port,
    });
    println!(
        "Released ports: ADB={}, WebRTC={} (device {} deleted)",
        device.adb_port, device.webrtc_port, device.id
    );
    Ok(StatusCode::NO_CONTENT)
}

/// 404 for an unknown device.
fn no_device(id: &str) -> ApiError {
    ApiError::not_found(format!("no device {id}"))
}
