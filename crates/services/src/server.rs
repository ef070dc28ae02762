//! [`run`]: a service's whole life, from socket to exit code.
//!
//! 1. take or bind the listener (before any thread exists, see
//!    [`listener::acquire`]);
//! 2. build the service's router, add `/health` (and the debug routes);
//! 3. announce `READY=1`;
//! 4. serve until SIGINT/SIGTERM, then stop accepting, drain in-flight
//!    requests, let long-lived tasks finish, and exit 0.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::routing::get;

use crate::identity::{self, Identity};
use crate::listener::{self, Origin};
use crate::shutdown::{self, Shutdown};
use crate::{accept, debug, env, error, notify};

/// How long WebSocket sessions and timed jobs get to wind down once the HTTP
/// side has drained. The supervisor's `kill_timeout` is the real bound; this
/// one only keeps a stuck task from holding the exit forever.
const TASK_GRACE: Duration = Duration::from_secs(5);

/// What a binary tells the kit about itself.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The service name, as in the health answer and the logs.
    pub name: &'static str,
    /// The port bound when no socket is inherited and `PORT` is unset.
    pub default_port: u16,
}

/// What a service's router builder receives.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Name, instance and pid of this process.
    pub identity: Arc<Identity>,
    /// For tasks that outlive a request (timers, WebSocket sessions).
    pub shutdown: Shutdown,
}

/// Runs `service`, with the routes `build` returns, until a stop signal.
///
/// Returns the process exit code: success after a graceful stop, failure
/// (with one line on stderr) when start-up fails.
pub fn run<F, Fut>(service: Service, build: F) -> ExitCode
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<Router>>,
{
    match start(service, build) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: error: {e:#}", service.name);
            ExitCode::FAILURE
        }
    }
}

/// [`run`], with errors.
fn start<F, Fut>(service: Service, build: F) -> Result<()>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<Router>>,
{
    // Before the runtime: taking fd 3 edits the environment.
    let listener = listener::acquire(service.default_port)?;
    let identity = Arc::new(Identity::from_env(service.name));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(serve(listener, identity, build))
}

/// The async part of [`run`].
async fn serve<F, Fut>(
    listener: listener::Listener,
    identity: Arc<Identity>,
    build: F,
) -> Result<()>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<Router>>,
{
    let name = identity.name;
    let (trigger, mut finished, shutdown) = shutdown::channel();
    let shutdown_for_accept = shutdown.clone();
    let ctx = Ctx {
        identity: identity.clone(),
        shutdown,
    };

    let mut app = build(ctx).await?.route(
        "/health",
        get(identity::health).with_state(identity.clone()),
    );
    if env::flag("SERVICE_DEBUG_ROUTES") {
        app = app.merge(debug::routes(identity.clone()));
    }
    let app = app.fallback(error::not_found);

    let tcp =
        tokio::net::TcpListener::from_std(listener.socket).context("hand the listener to tokio")?;
    let how = match listener.origin {
        Origin::Inherited => "socket from the supervisor on fd 3",
        Origin::Bound => "socket bound here",
    };
    println!(
        "{name} listening on {} ({}, pid {}, {how})",
        listener.addr, identity.instance, identity.pid
    );
    // The socket accepts from here on (connections queue in the backlog
    // until the first accept), so this is the moment to say so.
    let stop_signal = shutdown::signal_received();
    notify::notify_or_log(name, "READY=1");

    let stop_name = name;
    let serving = accept::serve(tcp, app, shutdown_for_accept);
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => {}
        signal = stop_signal => {
            println!("{stop_name} received {signal}: no new connections, draining in-flight requests");
            notify::notify_or_log(stop_name, "STOPPING=1");
            trigger.start();
            serving.await;
        }
    }
    if tokio::time::timeout(TASK_GRACE, finished.wait())
        .await
        .is_err()
    {
        println!("{name}: background tasks still running after {TASK_GRACE:?}, exiting anyway");
    }
    println!("{name} stopped");
    Ok(())
}
