//! The requests that bring apps from a file or by name: `start FILE`,
//! `start NAME`, `reload FILE`.
//!
//! An app the daemon knows is started (or reloaded) with the file's config;
//! an app it does not know is registered and started. A file's `[daemon]`
//! settings are applied first.

use std::collections::BTreeMap;
use std::sync::Arc;

use supd_config::{AppConfig, DaemonConfig};
use supd_proto::{Response, StartOutcome};
use supd_supervisor::spawn::check_program;

use crate::app::{AppHandle, Env};
use crate::ops::{self, Progress};
use crate::registry::Registry;

/// `start FILE`: each app of the file starts, one after the other, each
/// with its own outcome.
pub async fn start(
    registry: &Registry,
    configs: Vec<AppConfig>,
    base_env: BTreeMap<String, String>,
    daemon: Option<DaemonConfig>,
) -> Result<Response, String> {
    if let Some(daemon) = daemon {
        registry.apply_daemon(&daemon).await?;
    }
    let base_env = Arc::new(base_env);
    let mut outcomes = Vec::new();
    for config in configs {
        let config = registry.with_log_defaults(config);
        let name = config.name.clone();
        let result = match registry.find(&name) {
            Some(app) => match registry.port_taken(config.port, &name) {
                Ok(()) => ops::start(&app, Some((config, base_env.clone())))
                    .await
                    .map_err(String::from),
                Err(e) => Err(e),
            },
            None => match runnable(&config, &base_env) {
                Ok(()) => registry.add(config, base_env.clone(), Vec::new()).await,
                Err(e) => Err(e),
            },
        };
        outcomes.push(StartOutcome::of(name, result));
    }
    Ok(Response::Started { apps: outcomes })
}

/// Starts known apps with their own configs, one after the other, as
/// `start FILE` starts an app it knows; every name is looked up first,
/// so an unknown one starts nothing.
pub async fn start_known(registry: &Registry, targets: &[String]) -> Result<Response, String> {
    let mut apps: Vec<AppHandle> = Vec::new();
    for target in targets {
        for app in registry.resolve(target)? {
            if !apps.iter().any(|a| a.name == app.name) {
                apps.push(app);
            }
        }
    }
    let mut outcomes = Vec::new();
    for app in apps {
        let outcome = ops::start(&app, None).await;
        outcomes.push(StartOutcome::of(
            app.name.clone(),
            outcome.map_err(String::from),
        ));
    }
    Ok(Response::Started { apps: outcomes })
}

/// `reload FILE`: running apps get the new config the reload way, new
/// apps start. Stops at the first failure.
pub async fn reload_apps(
    registry: &Registry,
    configs: Vec<AppConfig>,
    base_env: BTreeMap<String, String>,
    daemon: Option<DaemonConfig>,
    progress: &Progress,
) -> Result<Response, String> {
    if let Some(daemon) = daemon {
        registry.apply_daemon(&daemon).await?;
    }
    let base_env = Arc::new(base_env);
    let mut names = Vec::new();
    for config in configs {
        let config = registry.with_log_defaults(config);
        let name = config.name.clone();
        match registry.find(&name) {
            Some(app) => {
                registry.port_taken(config.port, &name)?;
                ops::reload_with(&app, config, base_env.clone(), progress).await?;
            }
            None => {
                registry.add(config, base_env.clone(), Vec::new()).await?;
                let _ = progress.send(format!("{name}: started (new in the file)"));
            }
        }
        names.push(name);
    }
    Ok(Response::Done { apps: names })
}

/// Whether a new app's program can be run, checked before a user's `start`
/// registers it (a typo then leaves nothing behind). Saved apps brought back
/// are not checked: a program missing for a moment (mid-deploy) must not
/// make the daemon forget them; they come back errored instead.
fn runnable(config: &AppConfig, base_env: &Env) -> Result<(), String> {
    let env = match config.env.contains_key("PATH") {
        true => &config.env,
        false => &**base_env,
    };
    check_program(&config.script, &config.cwd, env)
        .map_err(|e| format!("app \"{}\": {e}", config.name))
}
