//! The metrics endpoint: Prometheus text at `/metrics` and the `list --json`
//! data at `/json`, served only when `[daemon] metrics = "HOST:PORT"` (or
//! `supd --metrics`) asks for it.
//!
//! Every scrape is built from the monitor's latest samples and the apps'
//! published views, so serving costs nothing between scrapes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as Metrics;
use supd_proto::{ProcessInfo, Status};
use supd_supervisor::procfs;
use tokio::net::TcpListener;

use crate::registry::Registry;

/// Labels of a per-instance series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    app: String,
    instance: String,
    mode: String,
}

/// Labels of the status series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    app: String,
    instance: String,
    mode: String,
    status: String,
}

/// Labels of a per-app series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Binds `addr` and serves until the daemon exits.
pub async fn serve(addr: SocketAddr, registry: Registry) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics at /metrics and /json");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, registry.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

async fn answer(
    req: Request<Incoming>,
    registry: Registry,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            prometheus(&registry),
        ),
        "/json" => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&registry.processes()).unwrap_or_else(|_| "[]".into()),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /json\n".into(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// The Prometheus text exposition of every instance, app and the daemon.
fn prometheus(registry: &Registry) -> String {
    let processes = registry.processes();
    let mut metrics = Metrics::default();
    let cpu = Family::<InstanceLabels, FloatGauge>::default();
    let memory = Family::<InstanceLabels, Gauge>::default();
    let restarts = Family::<InstanceLabels, Counter>::default();
    let uptime = Family::<InstanceLabels, FloatGauge>::default();
    let status = Family::<StatusLabels, Gauge>::default();
    let desired = Family::<AppLabels, Gauge>::default();
    let online = Family::<AppLabels, Gauge>::default();
    metrics.register(
        "supd_instance_cpu_percent",
        "CPU use of the instance's process tree, percent of one core",
        cpu.clone(),
    );
    metrics.register(
        "supd_instance_memory_bytes",
        "Resident memory of the instance's process tree",
        memory.clone(),
    );
    metrics.register(
        "supd_instance_restarts",
        "Restarts of the instance, automatic and requested",
        restarts.clone(),
    );
    metrics.register(
        "supd_instance_uptime_seconds",
        "Seconds since the instance's process started",
        uptime.clone(),
    );
    metrics.register(
        "supd_instance_status",
        "1 for the instance's current status",
        status.clone(),
    );
    metrics.register(
        "supd_app_desired_instances",
        "Instances the app is configured to run",
        desired.clone(),
    );
    metrics.register(
        "supd_app_online_instances",
        "Instances of the app that are online",
        online.clone(),
    );
    for p in &processes {
        let labels = instance_labels(p);
        cpu.get_or_create(&labels).set(p.cpu);
        memory.get_or_create(&labels).set(p.memory as i64);
        restarts
            .get_or_create(&labels)
            .inc_by(u64::from(p.restarts));
        uptime
            .get_or_create(&labels)
            .set(p.uptime_ms as f64 / 1000.0);
        let InstanceLabels {
            app,
            instance,
            mode,
        } = labels;
        status
            .get_or_create(&StatusLabels {
                app,
                instance,
                mode,
                status: p.status.as_str().into(),
            })
            .set(1);
    }
    for view in registry.views() {
        let app = AppLabels {
            app: view.config.name.clone(),
        };
        desired
            .get_or_create(&app)
            .set(i64::from(view.config.instances));
        let up = view
            .instances
            .iter()
            .filter(|i| i.status == Status::Online)
            .count();
        online.get_or_create(&app).set(up as i64);
    }
    let (rss, cpu_seconds) = own_usage();
    let daemon_memory = Gauge::<i64>::default();
    daemon_memory.set(rss as i64);
    let daemon_cpu = Counter::<f64, AtomicU64>::default();
    daemon_cpu.inc_by(cpu_seconds);
    metrics.register(
        "supd_daemon_memory_bytes",
        "Resident memory of the supd daemon",
        daemon_memory,
    );
    metrics.register(
        "supd_daemon_cpu_seconds",
        "CPU time used by the supd daemon",
        daemon_cpu,
    );
    let mut out = String::new();
    if encode(&mut out, &metrics).is_err() {
        return String::new();
    }
    out
}

fn instance_labels(p: &ProcessInfo) -> InstanceLabels {
    InstanceLabels {
        app: p.name.clone(),
        instance: p.instance.to_string(),
        mode: format!("{:?}", p.mode).to_lowercase(),
    }
}

/// The daemon's own resident bytes and CPU seconds (user + system).
fn own_usage() -> (u64, f64) {
    let rss = procfs::stat(std::process::id()).map_or(0, |s| s.rss_pages * procfs::page_size());
    let cpu =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        });
    (rss, cpu)
}
