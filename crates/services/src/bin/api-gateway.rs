//! api-gateway: the platform's entry point. Forwards `/api/...` requests to
//! the service that owns them (see `supd_services::routes::TABLE`), keeping
//! method, query, headers and body, streaming both ways.
//!
//! Stateless, so it runs in cluster mode; `GET /` and `GET /health` name the
//! instance that answered, and every forwarded response carries an
//! `x-served-by` header, so a test can see the load spread across instances.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use supd_services::identity::{self, Identity};
use supd_services::routes::{self, Route, TABLE};
use supd_services::{ApiError, Ctx, Service, env};

/// How long connecting to an upstream may take before the request fails
/// with 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One configured upstream: a row of the table and its base URL.
#[derive(Debug)]
struct Upstream {
    /// The routing-table row.
    route: &'static Route,
    /// `http://host:port` plus an optional path prefix, without a trailing `/`.
    base: String,
}

/// Shared handler state.
#[derive(Debug)]
struct Gateway {
    /// One per row of [`TABLE`], same order.
    upstreams: Vec<Upstream>,
    /// Pooled keep-alive connections to the upstreams.
    client: Client<HttpConnector, Body>,
    /// `x-served-by` value: `api-gateway instance-N`.
    served_by: HeaderValue,
}

fn main() -> ExitCode {
    supd_services::run(
        Service {
            name: "api-gateway",
            default_port: 30000,
        },
        build,
    )
}

/// The routes, with upstream URLs from `*_SERVICE_URL`.
async fn build(ctx: Ctx) -> anyhow::Result<Router> {
    let mut upstreams = Vec::with_capacity(TABLE.len());
    for route in TABLE {
        let base = env::var_or(route.env, route.default_url);
        let uri: Uri = base
            .parse()
            .with_context(|| format!("invalid {}={base:?}", route.env))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            bail!("invalid {}={base:?}: expected http://host:port", route.env);
        }
        upstreams.push(Upstream {
            route,
            base: base.trim_end_matches('/').to_owned(),
        });
    }
    let summary: Vec<String> = upstreams
        .iter()
        .map(|u| format!("{} -> {} ({})", u.route.prefix, u.route.service, u.base))
        .collect();
    println!("api-gateway routes: {}", summary.join(", "));
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    let served_by = HeaderValue::from_str(&format!("api-gateway {}", ctx.identity.instance))
        .context("INSTANCE_ID must be printable")?;
    let gateway = Gateway {
        upstreams,
        client: Client::builder(TokioExecutor::new()).build(connector),
        served_by,
    };
    let identity: Arc<Identity> = ctx.identity;
    Ok(Router::new()
        .route("/", get(identity::health).with_state(identity))
        .route("/api/{*rest}", any(forward).with_state(Arc::new(gateway))))
}

/// Forwards one request to its upstream and streams the answer back.
async fn forward(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let Some((index, path)) = routes::resolve(TABLE, request.uri().path()) else {
        return ApiError::not_found("no route for this path").into_response();
    };
    let upstream = &gateway.upstreams[index];
    let target = match request.uri().query() {
        Some(query) => format!("{}{path}?{query}", upstream.base),
        None => format!("{}{path}", upstream.base),
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return ApiError::bad_request("the path cannot be forwarded").into_response();
    };

    let (mut parts, body) = request.into_parts();
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    // The client sets Host from the upstream URI.
    parts.headers.remove(header::HOST);

    match gateway
        .client
        .request(Request::from_parts(parts, body))
        .await
    {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.headers.insert(
                HeaderName::from_static("x-served-by"),
                gateway.served_by.clone(),
            );
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            let detail = error_chain(&e);
            let service = upstream.route.service;
            println!("upstream {service} at {} failed: {detail}", upstream.base);
            let body =
                json!({ "error": "upstream unreachable", "service": service, "detail": detail });
            (StatusCode::BAD_GATEWAY, Json(body)).into_response()
        }
    }
}

/// Removes the headers that describe one connection rather than the message
/// (RFC 9110 §7.6.1), including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// `error: cause: cause`, like anyhow's `{:#}`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
