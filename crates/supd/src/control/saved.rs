//! The process list: `save` writes it, `resurrect` brings it back.
//!
//! Saved are the daemon settings in force and each app's config, caller
//! environment and whether it is stopped (see [`crate::dump`]); bringing
//! them back is [`Registry::restore`], which a daemon that died also uses.

use std::collections::HashMap;

use supd_proto::Response;

use crate::dump::{self, SavedApp};
use crate::registry::Registry;

/// Writes the process list: the daemon settings in force, and each app's
/// config (with its current instance count), caller environment, and
/// whether it is stopped.
pub async fn save(registry: &Registry) -> Result<Response, String> {
    let apps: Vec<SavedApp> = registry.views().iter().map(SavedApp::of).collect();
    let names = apps.iter().map(|a| a.config.name.clone()).collect();
    let daemon = dump::in_force(
        registry.daemon_config(),
        registry.sample_interval(),
        registry.metrics_address().await,
    );
    let path = dump::save(&registry.home(), daemon, apps)?;
    tracing::info!(path = %path.display(), "process list saved");
    Ok(Response::Saved { path, apps: names })
}

/// Brings back the saved daemon settings (as a file's `[daemon]` would
/// be applied) and process list (see [`Registry::restore`]). The apps
/// come back even when a setting cannot (metrics on a port now taken):
/// that is then the error.
pub async fn resurrect(registry: &Registry) -> Result<Response, String> {
    let dump = dump::load(&registry.home())?;
    let settings = match &dump.daemon {
        Some(daemon) => registry.apply_daemon(daemon).await,
        None => Ok(()),
    };
    let apps = registry.restore(dump.apps, HashMap::new()).await;
    settings
        .map_err(|e| format!("the saved apps are back, but not the saved daemon settings: {e}"))?;
    Ok(Response::Started { apps })
}
