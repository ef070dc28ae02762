//! `cron_restart`: one timer task per app that emits a [`Why::Cron`] on
//! its schedule (the reactor restarts the app gracefully, the reload way
//! for cluster apps and several instances, the schedule shown as the
//! restart's reason).

use croner::Cron;
use tokio::task::JoinHandle;

use super::{Emitter, Why};
use crate::app::{AppHandle, AppView};

/// The timer of an app with a valid `cron_restart` in `view`'s config; it
/// waits for each restart it causes before computing the next due time.
pub fn arm(app: &AppHandle, view: &AppView, emitter: &Emitter) -> Option<JoinHandle<()>> {
    let expr = view.config.cron_restart.clone()?;
    let cron = expr.parse::<Cron>().ok()?;
    let (app, emitter) = (app.clone(), emitter.clone());
    Some(tokio::spawn(async move {
        while let Some(wait) = until_next(&cron) {
            tokio::time::sleep(wait).await;
            emitter.act(&app, Why::Cron(expr.clone())).await;
        }
    }))
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
