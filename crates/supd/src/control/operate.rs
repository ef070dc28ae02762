//! The requests that act on apps the daemon knows: stop, restart, reload,
//! scale, delete, kill, and signal, reset, flush.
//!
//! Each is a short sequence over [`crate::ops`] or the actor's commands,
//! run on every targeted app at once ([`each`]). Whether the app's files
//! are watched afterwards follows from whether it runs (see
//! [`crate::triggers`]): nothing here re-arms them.

use std::future::Future;

use supd_proto::{Response, ScaleTo};
use supd_supervisor::group::parse_signal;
use tokio::task::JoinSet;

use crate::app::{AppError, AppHandle, Command, Stop};
use crate::ops::{self, Progress};
use crate::registry::Registry;

/// `stop`: every targeted app stops, preempting any operation in progress.
pub async fn stop(registry: &Registry, target: &str) -> Result<Response, String> {
    each(
        registry,
        target,
        |a| async move { a.halt(Stop::Keep).await },
    )
    .await
}

/// `restart`: every targeted app restarts.
pub async fn restart(registry: &Registry, target: &str) -> Result<Response, String> {
    each(registry, target, |a| async move { ops::restart(&a).await }).await
}

/// `reload`: every targeted app is replaced instance by instance.
pub async fn reload(
    registry: &Registry,
    target: &str,
    progress: &Progress,
) -> Result<Response, String> {
    let progress = progress.clone();
    each(registry, target, move |a| {
        let progress = progress.clone();
        async move { ops::reload(&a, &progress).await }
    })
    .await
}

/// `scale`: one app runs `to` instances.
pub async fn scale(
    registry: &Registry,
    name: String,
    to: ScaleTo,
    progress: &Progress,
) -> Result<Response, String> {
    let app = registry.get(&name)?;
    ops::scale(&app, to, progress).await?;
    Ok(Response::Done { apps: vec![name] })
}

/// `delete`: every targeted app stops and is forgotten.
pub async fn delete(registry: &Registry, target: &str) -> Result<Response, String> {
    // An app another request is deleting already is deleted all the same.
    let result = each(registry, target, |a| async move {
        match a.halt(Stop::Delete).await {
            Err(AppError::Gone { .. }) => Ok(()),
            other => other,
        }
    })
    .await;
    // Forget every app that is gone, even if another one failed.
    let deleted: &[String] = match &result {
        Ok(Response::Done { apps }) => apps,
        _ => &[],
    };
    registry.forget(deleted);
    result
}

/// `kill` (and the daemon's own shutdown): every app is deleted.
pub async fn kill(registry: &Registry) -> Result<Response, String> {
    // Deleting (not just stopping) ends every actor, so nothing queued
    // behind the stop (a cron restart, a replacement) can start a process
    // the exiting daemon would leave behind.
    delete(registry, "all").await
}

/// `flush`: every targeted app empties its log files.
pub async fn flush(registry: &Registry, target: &str) -> Result<Response, String> {
    each(registry, target, |a| async move {
        let name = a.name.clone();
        a.ask(Command::Flush)
            .await?
            .map_err(|e| AppError::Failed(format!("app \"{name}\": cannot flush logs: {e}")))
    })
    .await
}

/// `signal`: every process of the targeted apps gets `signal`.
pub async fn signal(registry: &Registry, signal: &str, target: &str) -> Result<Response, String> {
    let sig = parse_signal(signal).ok_or_else(|| format!("unknown signal \"{signal}\""))?;
    each(registry, target, move |a| {
        a.ask(move |r| Command::Signal(sig, r))
    })
    .await
}

/// `reset`: the targeted apps' restart counters go back to zero.
pub async fn reset(registry: &Registry, target: &str) -> Result<Response, String> {
    each(registry, target, |a| a.ask(Command::Reset)).await
}

/// Runs `op` on every targeted app concurrently; the first error wins
/// ([`ops::all_or_first_error`]).
async fn each<F, Fut>(registry: &Registry, target: &str, op: F) -> Result<Response, String>
where
    F: Fn(AppHandle) -> Fut,
    Fut: Future<Output = Result<(), AppError>> + Send + 'static,
{
    let apps = registry.resolve(target)?;
    let names = apps.iter().map(|a| a.name.clone()).collect();
    let mut tasks = JoinSet::new();
    for app in apps {
        tasks.spawn(op(app));
    }
    ops::all_or_first_error(tasks).await?;
    Ok(Response::Done { apps: names })
}
