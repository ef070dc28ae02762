//! The reactor: the one place that turns triggers into operations.
//!
//! Each [`Trigger`] (and each [`Trouble`] an app actor or the monitor
//! reports, by app name) becomes one operation of [`crate::ops`], run in a
//! task of its own: it waits for its app's operation lock, so triggers of
//! one app never interleave with each other or with a user's reload, and a
//! slow one never holds up another app's. What fails is logged.

use tokio::sync::mpsc;

use super::{Trigger, Why};
use crate::app::Trouble;
use crate::ops;
use crate::views::Views;

/// What the reactor does about one trigger.
#[derive(Debug, PartialEq)]
enum Operation {
    /// [`ops::scheduled_restart`], for the reason.
    ScheduledRestart(String),
    /// [`ops::restart_because`], for the reason.
    RestartBecause(String),
    /// [`ops::reload`].
    Reload,
    /// [`ops::replace`] of the process, for the reason.
    Replace(u64, String),
}

impl Why {
    /// The operation this trigger calls for (a pure rule, see the tests).
    fn operation(&self) -> Operation {
        match self {
            Why::Cron(expr) => Operation::ScheduledRestart(format!("cron_restart \"{expr}\"")),
            Why::Changed(reason) => Operation::RestartBecause(reason.clone()),
            Why::Unhealthy => Operation::Reload,
            Why::Trouble { generation, reason } => Operation::Replace(*generation, reason.clone()),
        }
    }

    /// How the daemon log names its operation.
    fn operation_name(&self) -> &'static str {
        match self {
            Why::Cron(_) => "the cron_restart",
            Why::Changed(_) => "the restart after a change",
            Why::Unhealthy => "the reload after failed health checks",
            Why::Trouble { .. } => "the replacement of a process",
        }
    }
}

/// Acts on every trigger emitted and every trouble reported, until both
/// channels close; `apps` finds a reported app by name.
pub async fn react(
    mut triggers: mpsc::UnboundedReceiver<Trigger>,
    mut troubles: mpsc::UnboundedReceiver<Trouble>,
    apps: Views,
) {
    loop {
        let trigger = tokio::select! {
            Some(trigger) = triggers.recv() => trigger,
            Some(trouble) = troubles.recv() => {
                let Some(app) = apps.find(&trouble.app) else {
                    continue;
                };
                let why = Why::Trouble {
                    generation: trouble.generation,
                    reason: trouble.reason,
                };
                Trigger { app, why, done: None }
            }
            else => return,
        };
        tokio::spawn(act(trigger));
    }
}

/// Runs the operation of one trigger (none for an app deleted meanwhile),
/// then tells whoever waits for it.
async fn act(trigger: Trigger) {
    let Trigger { app, why, done } = trigger;
    if !app.is_gone() {
        let name = app.name.clone();
        let (progress, _) = mpsc::unbounded_channel();
        let result = match why.operation() {
            Operation::ScheduledRestart(reason) => {
                tracing::info!(app = %name, "{reason}: restarting");
                ops::scheduled_restart(&app, &reason, &progress).await
            }
            Operation::RestartBecause(reason) => {
                tracing::info!(app = %name, "{reason}: restarting");
                ops::restart_because(&app, &reason, &progress).await
            }
            Operation::Reload => {
                tracing::warn!(app = %name, "health check failing: reloading the app");
                ops::reload(&app, &progress).await
            }
            Operation::Replace(generation, reason) => ops::replace(&app, generation, &reason).await,
        };
        match result {
            // A user's stop or delete came first: nothing failed.
            Err(e) if e.is_preemption() => {
                tracing::info!(app = %name, "{} did not finish: {e}", why.operation_name())
            }
            Err(e) => tracing::error!(app = %name, "{} failed: {e}", why.operation_name()),
            Ok(()) => {}
        }
    }
    if let Some(done) = done {
        let _ = done.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_trigger_calls_for_its_operation() {
        let trouble = Why::Trouble {
            generation: 7,
            reason: "memory limit 10MB exceeded: 12MB".into(),
        };
        let table = [
            (
                Why::Cron("0 3 * * *".into()),
                Operation::ScheduledRestart("cron_restart \"0 3 * * *\"".into()),
                "the cron_restart",
            ),
            (
                Why::Changed("watch: src/a.js changed".into()),
                Operation::RestartBecause("watch: src/a.js changed".into()),
                "the restart after a change",
            ),
            (
                Why::Unhealthy,
                Operation::Reload,
                "the reload after failed health checks",
            ),
            (
                trouble,
                Operation::Replace(7, "memory limit 10MB exceeded: 12MB".into()),
                "the replacement of a process",
            ),
        ];
        for (why, operation, name) in table {
            assert_eq!(why.operation(), operation, "{why:?}");
            assert_eq!(why.operation_name(), name, "{why:?}");
        }
    }
}
