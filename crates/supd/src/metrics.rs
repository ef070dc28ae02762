//! The metrics endpoint: Prometheus metrics at `/metrics` and the
//! `list --json` data at `/json`, served only when `[daemon] metrics =
//! "HOST:PORT"` (or `supd --metrics`) asks for it.
//!
//! `/metrics` answers the text format 0.0.4, or OpenMetrics when the
//! scraper's `Accept` header prefers it (see [`exposition`]), with families
//! and samples in a fixed order. Only GET and HEAD are answered; other
//! methods get 405 with `Allow`. Every scrape is built from the monitor's
//! latest samples and the apps' published views, so serving costs nothing
//! between scrapes.

mod exposition;

use std::convert::Infallible;
use std::net::SocketAddr;

use exposition::{Family, Format, Kind};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue, VARY};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use supd_proto::{ProcessInfo, Status};
use supd_supervisor::procfs;
use tokio::net::TcpListener;

use crate::monitor::Samples;
use crate::views::Views;

/// What a scrape reads: the apps' published views and the monitor's
/// latest samples (never the table itself, which does not know it is read).
#[derive(Clone)]
pub struct Source {
    /// The apps, in start order.
    pub apps: Views,
    /// The monitor's latest figures.
    pub samples: Samples,
}

impl Source {
    /// The process table, as `list` shows it.
    fn processes(&self) -> Vec<ProcessInfo> {
        self.samples.table(&self.apps.views())
    }
}

/// Binds `addr` and serves until the daemon exits.
pub async fn serve(addr: SocketAddr, source: Source) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics at /metrics and /json");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let source = source.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, source.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

/// The answer to one request: the body, or 404 for an unknown path, 405
/// for a method other than GET and HEAD (hyper leaves HEAD's body out).
async fn answer(
    req: Request<Incoming>,
    source: Source,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let allowed = matches!(*req.method(), Method::GET | Method::HEAD);
    let (status, content_type, body) = match req.uri().path() {
        _ if !allowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            format!("method {} not allowed: use GET or HEAD\n", req.method()),
        ),
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            (
                StatusCode::OK,
                format.content_type(),
                exposition::render(&families(&source), format),
            )
        }
        "/json" => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&source.processes()).unwrap_or_else(|_| "[]".into()),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /json\n".into(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The body of /metrics depends on Accept: caches must not mix them.
    headers.insert(VARY, HeaderValue::from_static("Accept"));
    if !allowed {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    Ok(response)
}

/// Every family of a scrape, in a fixed order: instances (by app name, then
/// instance number), apps (by name), then the daemon itself.
fn families(source: &Source) -> Vec<Family> {
    let mut views = source.apps.views();
    let mut processes = source.samples.table(&views);
    processes.sort_by(|a, b| (&a.name, a.instance).cmp(&(&b.name, b.instance)));
    let mut cpu = Family::new(
        "supd_instance_cpu_percent",
        Kind::Gauge,
        "CPU use of the instance's process tree, percent of one core",
    );
    let mut memory = Family::new(
        "supd_instance_memory_bytes",
        Kind::Gauge,
        "Resident memory of the instance's process tree",
    );
    let mut restarts = Family::new(
        "supd_instance_restarts",
        Kind::Counter,
        "Restarts of the instance, automatic and requested",
    );
    let mut uptime = Family::new(
        "supd_instance_uptime_seconds",
        Kind::Gauge,
        "Seconds since the instance's process started",
    );
    let mut status = Family::new(
        "supd_instance_status",
        Kind::Gauge,
        "1 for the instance's current status",
    );
    for p in &processes {
        let labels = instance_labels(p);
        cpu.sample(labels.clone(), p.cpu);
        memory.sample(labels.clone(), p.memory as f64);
        restarts.sample(labels.clone(), f64::from(p.restarts));
        uptime.sample(labels.clone(), p.uptime_ms as f64 / 1000.0);
        let mut labels = labels;
        labels.push(("status", p.status.as_str().into()));
        status.sample(labels, 1.0);
    }
    let mut desired = Family::new(
        "supd_app_desired_instances",
        Kind::Gauge,
        "Instances the app is configured to run",
    );
    let mut online = Family::new(
        "supd_app_online_instances",
        Kind::Gauge,
        "Instances of the app that are online",
    );
    views.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    for view in &views {
        let app = || vec![("app", view.config.name.clone())];
        desired.sample(app(), f64::from(view.config.instances));
        let up = view
            .instances
            .iter()
            .filter(|i| i.status == Status::Online)
            .count();
        online.sample(app(), up as f64);
    }
    let (rss, cpu_seconds) = own_usage();
    let mut daemon_memory = Family::new(
        "supd_daemon_memory_bytes",
        Kind::Gauge,
        "Resident memory of the supd daemon",
    );
    daemon_memory.sample(vec![], rss as f64);
    let mut daemon_cpu = Family::new(
        "supd_daemon_cpu_seconds",
        Kind::Counter,
        "CPU time used by the supd daemon",
    );
    daemon_cpu.sample(vec![], cpu_seconds);
    vec![
        cpu,
        memory,
        restarts,
        uptime,
        status,
        desired,
        online,
        daemon_memory,
        daemon_cpu,
    ]
}

/// The labels of a per-instance sample: app, instance, mode.
fn instance_labels(p: &ProcessInfo) -> Vec<(&'static str, String)> {
    vec![
        ("app", p.name.clone()),
        ("instance", p.instance.to_string()),
        ("mode", format!("{:?}", p.mode).to_lowercase()),
    ]
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
