//! `cron_restart`: one timer task per app that restarts it gracefully on
//! its schedule (the reload way for cluster apps and several instances),
//! the schedule shown as the restart's reason.

use std::sync::{Arc, Mutex};

use croner::Cron;
use tokio::task::JoinHandle;

use crate::app::AppHandle;
use crate::ops;

/// The armed schedule of one app; re-arming replaces it, dropping disarms.
#[derive(Clone, Default)]
pub struct Schedule(Arc<Mutex<Option<JoinHandle<()>>>>);

impl Schedule {
    /// Arms (or re-arms, or disarms) the app's timer from its current config.
    pub fn arm(&self, app: &AppHandle) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take() {
            old.abort();
        }
        let Some(expr) = app.view().config.cron_restart.clone() else {
            return;
        };
        let Ok(cron) = expr.parse::<Cron>() else {
            return;
        };
        let app = app.clone();
        *slot = Some(tokio::spawn(async move {
            while let Some(wait) = until_next(&cron) {
                tokio::time::sleep(wait).await;
                let name = app.view().config.name.clone();
                let reason = format!("cron_restart \"{expr}\"");
                tracing::info!(app = %name, "{reason}: restarting");
                let (progress, _) = tokio::sync::mpsc::unbounded_channel();
                if let Err(e) = ops::scheduled_restart(&app, &reason, &progress).await {
                    tracing::error!(app = %name, "cron_restart failed: {e}");
                }
            }
        }));
    }

    /// Stops the timer.
    pub fn disarm(&self) {
        if let Some(old) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            old.abort();
        }
    }
}

/// When the next run of `expr` is due, in local time, if it has one.
pub fn next_due(expr: &str) -> Option<chrono::DateTime<chrono::Local>> {
    expr.parse::<Cron>()
        .ok()?
        .find_next_occurrence(&chrono::Local::now(), false)
        .ok()
}

fn until_next(cron: &Cron) -> Option<std::time::Duration> {
    let now = chrono::Local::now();
    let next = cron.find_next_occurrence(&now, false).ok()?;
    (next - now).to_std().ok()
}
