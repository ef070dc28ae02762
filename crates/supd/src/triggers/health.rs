//! Health checks (beyond PM2): an app's `health_check` runs every
//! `health_interval`; after `health_retries` failures in a row the failing
//! instance is replaced (the reload way for cluster apps).
//!
//! Two kinds of check:
//! - a command (run by `sh -c`), once per online instance, with that
//!   instance's `INSTANCE_ID`, `PID`, `PORT` and `SUPD_APP_NAME` in its
//!   environment: exit 0 within `health_timeout` is healthy;
//! - an `http://` URL (`{port}` is replaced by the app's port): a 2xx or 3xx
//!   answer within `health_timeout` is healthy. All instances share the port,
//!   so the check speaks for the app: a single-instance app has that instance
//!   replaced, a multi-instance app is reloaded as a whole.
//!
//! The checker emits what must be done ([`Why::Trouble`] for one process,
//! [`Why::Unhealthy`] for the app) and the reactor does it.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use supd_config::{AppConfig, HealthProbe};
use supd_proto::Status;
use supd_supervisor::group;
use supd_supervisor::{Exit, Reaper, SpawnSpec};
use tokio::task::JoinHandle;

use super::{Emitter, Why};
use crate::app::{AppHandle, AppView};

/// The checker of an app whose config in `view` has a `health_check`.
pub fn arm(
    app: &AppHandle,
    view: &AppView,
    emitter: &Emitter,
    reaper: &Reaper,
) -> Option<JoinHandle<()>> {
    view.config.health_check.as_ref()?;
    let run = run(app.clone(), emitter.clone(), reaper.clone());
    Some(tokio::spawn(run))
}

/// Checks every `health_interval`, reading the config afresh each time.
async fn run(app: AppHandle, emitter: Emitter, reaper: Reaper) {
    // Failures in a row, per process (generation).
    let mut failures: HashMap<u64, u32> = HashMap::new();
    loop {
        let config = app.view().config;
        tokio::time::sleep(config.health_interval).await;
        let probe = match config.health_probe() {
            Ok(Some(probe)) => probe,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(app = %config.name, "health_check: {e}");
                return;
            }
        };
        let online: Vec<_> = app
            .view()
            .instances
            .into_iter()
            .filter(|i| i.status == Status::Online)
            .collect();
        if online.is_empty() {
            continue;
        }
        let results: Vec<(u64, Result<(), String>)> = match &probe {
            HealthProbe::Http {
                url,
                host,
                port,
                path,
            } => {
                let result = http_check(url, host, *port, path, config.health_timeout).await;
                online
                    .iter()
                    .map(|i| (i.generation, result.clone()))
                    .collect()
            }
            HealthProbe::Command(command) => {
                let mut results = Vec::new();
                for inst in &online {
                    let pid = inst.pid.unwrap_or_default();
                    let result = command_check(&reaper, command, &config, inst.slot, pid).await;
                    results.push((inst.generation, result));
                }
                results
            }
        };
        failures.retain(|g, _| online.iter().any(|i| i.generation == *g));
        let mut failing = Vec::new();
        for (generation, result) in results {
            match result {
                Ok(()) => {
                    failures.remove(&generation);
                }
                Err(e) => {
                    let count = failures.entry(generation).or_default();
                    *count += 1;
                    tracing::warn!(app = %config.name, "health check failed ({count}/{}): {e}", config.health_retries);
                    if *count >= config.health_retries {
                        failing.push((
                            generation,
                            format!("health check failed {count} times in a row: {e}"),
                        ));
                    }
                }
            }
        }
        if failing.is_empty() {
            continue;
        }
        if matches!(probe, HealthProbe::Http { .. }) && online.len() > 1 {
            emitter.act(&app, Why::Unhealthy).await;
        } else {
            for (generation, reason) in failing {
                emitter.send(&app, Why::Trouble { generation, reason });
            }
        }
        failures.clear();
    }
}

/// One GET; healthy on 2xx or 3xx within `timeout`.
async fn http_check(
    url: &str,
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("GET {url} answered {status}"))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("GET {url}: no answer within {} ms", timeout.as_millis()))?
}

/// Runs the command for one instance; healthy on exit 0 within
/// `health_timeout`. Spawned through the daemon's reaper (the one reaping
/// mechanism), in its own process group, killed whole on timeout.
async fn command_check(
    reaper: &Reaper,
    command: &str,
    config: &AppConfig,
    slot: u32,
    pid: u32,
) -> Result<(), String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.insert("SUPD_APP_NAME".into(), config.name.clone());
    env.insert(config.instance_var.clone(), slot.to_string());
    env.insert("PID".into(), pid.to_string());
    if let Some(port) = config.port {
        env.insert("PORT".into(), port.to_string());
    }
    let devnull = || {
        std::fs::File::create("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| e.to_string())
    };
    let args = ["-c".to_string(), command.to_string()];
    let spec = SpawnSpec {
        program: "sh",
        args: &args,
        cwd: &config.cwd,
        env: &env,
        stdout: devnull()?,
        stderr: devnull()?,
        pass_fds: Vec::new(),
        listen_pid: false,
    };
    let (check_pid, exit) = reaper
        .spawn(spec)
        .map_err(|e| format!("cannot run the health check: {e}"))?;
    match tokio::time::timeout(config.health_timeout, exit).await {
        Ok(Ok(Exit::Code(0))) => Ok(()),
        Ok(Ok(Exit::Code(code))) => Err(format!("`{command}` exited with code {code}")),
        Ok(Ok(Exit::Signal(sig))) => Err(format!("`{command}` was killed by signal {sig}")),
        Ok(Ok(Exit::Unknown) | Err(_)) => Err(format!("`{command}`: exit status lost")),
        Err(_) => {
            group::signal(check_pid, Signal::SIGKILL);
            Err(format!(
                "`{command}`: no answer within {} ms",
                config.health_timeout.as_millis()
            ))
        }
    }
}
