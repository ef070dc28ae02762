//! The read-only requests: `ping`, `list`, `show`, log file paths, `env`.
//!
//! They read the apps' published views (and ask an actor only for what it
//! alone knows, an instance's environment), change nothing, and so never
//! wait for the state file or for an operation in progress.

use supd_proto::{AppDetail, AppLogs, Response};

use crate::app::Command;
use crate::logs;
use crate::registry::Registry;
use crate::triggers;

/// `ping`: who the daemon is (pid, version, image) and its settings in force.
pub async fn ping(registry: &Registry) -> Response {
    let image = registry.image();
    Response::Pong {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        binary: Some(image.binary.clone()),
        image_started_ms: image.started_ms,
        origin: image.origin.clone(),
        sample_interval_ms: Some(registry.sample_interval().as_millis() as u64),
        metrics: registry.metrics_address().await,
    }
}

/// `list`: the process table.
pub fn list(registry: &Registry) -> Response {
    Response::List {
        processes: registry.processes(),
    }
}

/// `show`: one app's config, instances, log files and problems.
pub fn show(registry: &Registry, name: &str) -> Result<Response, String> {
    let app = registry.get(name)?;
    let view = app.view();
    let instances = view
        .instances
        .iter()
        .zip(registry.process_rows(&view))
        .map(|(inst, process)| inst.detail(process))
        .collect();
    let logs: AppLogs = logs::paths(&registry.home(), &view.config);
    let next_cron_restart = view
        .config
        .cron_restart
        .as_deref()
        .and_then(triggers::next_due)
        .map(|t| t.to_rfc3339());
    let config = (*view.config).clone();
    Ok(Response::Show {
        app: Box::new(AppDetail {
            config,
            host: view.host,
            instances,
            logs,
            next_cron_restart,
            log_problem: app.log_problem(),
            watch_problem: registry.watch_problem(name),
        }),
    })
}

/// The log file paths of the targeted apps (`supctl logs` reads them).
pub fn log_files(registry: &Registry, target: &str) -> Result<Response, String> {
    let home = registry.home();
    registry.resolve(target).map(|apps| Response::LogFiles {
        apps: apps
            .iter()
            .map(|a| logs::paths(&home, &a.view().config))
            .collect(),
    })
}

/// `env`: the environment one instance was started with.
pub async fn env(registry: &Registry, name: &str, instance: u32) -> Result<Response, String> {
    registry
        .get(name)?
        .ask(|reply| Command::Env {
            slot: instance,
            reply,
        })
        .await?
        .map(|env| Response::Env { env })
}
