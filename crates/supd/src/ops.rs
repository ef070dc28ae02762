//! Multi-step operations on one app, sequenced on the actor's primitives:
//! start, restart, reload (rolling, each instance swapped in the order
//! [`order::swap_order`] picks) and scale.
//!
//! One operation runs at a time per app (the handle's operation lock), so two
//! reloads never interleave; the actor keeps handling crashes and `list`
//! meanwhile.

mod order;

use std::time::Duration;

use supd_config::{AppConfig, check_instance_count};
use supd_proto::{Outcome, ScaleTo, Status};
use tokio::task::JoinSet;

use crate::app::{AppError, AppHandle, AppView, Env, Launch, Retire};
use order::{Order, swap_order};

/// The longest a removed slot's accept queue is given to drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How often a draining queue is looked at.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Where an operation reports its steps (`supctl` prints them as they come).
pub type Progress = tokio::sync::mpsc::UnboundedSender<String>;

/// Starts what is down: with nothing running, every slot (with the new
/// config, if one is given); with some instances running, only the down
/// slots. An app whose every slot is live is already online.
pub async fn start(app: &AppHandle, new: Option<(AppConfig, Env)>) -> Result<Outcome, AppError> {
    let _op = app.begin().await;
    let view = app.view();
    let active: Vec<u32> = view
        .instances
        .iter()
        .filter(|i| i.is_active())
        .map(|i| i.slot)
        .collect();
    if !active.is_empty() {
        // Running: a new config is `reload`'s job; slots that are down
        // (errored, stopped) are started, the others left alone.
        let down: Vec<u32> = (0..view.config.instances)
            .filter(|s| !active.contains(s))
            .collect();
        if down.is_empty() {
            return Ok(Outcome::AlreadyOnline);
        }
        for slot in down {
            app.launch(slot, Launch::Start).await?;
        }
        return Ok(Outcome::Started);
    }
    if let Some((config, env)) = new {
        app.configure(config, Some(env)).await?;
    }
    trim_slots(app).await;
    launch_all(app, Launch::Start).await?;
    app.route(app.view().config.instances)
        .await
        .map(|()| Outcome::Started)
}

/// Stops every instance, then starts every configured slot again (as a
/// restart).
pub async fn restart(app: &AppHandle) -> Result<(), AppError> {
    let _op = app.begin().await;
    app.stop().await?;
    trim_slots(app).await;
    launch_all(app, Launch::Restart).await?;
    app.route(app.view().config.instances).await
}

/// Replaces every instance slot by slot without refusing a connection.
pub async fn reload(app: &AppHandle, progress: &Progress) -> Result<(), AppError> {
    let _op = app.begin().await;
    roll(app, progress, None).await
}

/// Rolls a new config onto a running app (the reload way) and then matches
/// its instance count; a stopped app is simply started with it.
pub async fn reload_with(
    app: &AppHandle,
    config: AppConfig,
    env: Env,
    progress: &Progress,
) -> Result<(), AppError> {
    let _op = app.begin().await;
    if !app.view().instances.iter().any(|i| i.is_active()) {
        app.configure(config, Some(env)).await?;
        trim_slots(app).await;
        launch_all(app, Launch::Start).await?;
        return app.route(app.view().config.instances).await;
    }
    let target = config.instances;
    if target < app.view().config.instances {
        resize(app, target, progress).await?;
    }
    let mut config = config;
    config.instances = app.view().config.instances;
    app.configure(config, Some(env)).await?;
    roll(app, progress, None).await?;
    resize(app, target, progress).await
}

/// Replaces one process that must go (memory limit, failed health check,
/// silent watchdog) the way a reload would ([`swap_order`]): where the
/// daemon holds the port, the new one ready first, so no request fails;
/// else (a fork app without a port, a capped app) a graceful stop, then a
/// start. A process already replaced meanwhile is left alone.
pub async fn replace(app: &AppHandle, generation: u64, reason: &str) -> Result<(), AppError> {
    let _op = app.begin().await;
    let view = app.view();
    let Some(inst) = view
        .instances
        .iter()
        .find(|i| i.generation == generation && i.status == Status::Online)
    else {
        return Ok(());
    };
    let slot = inst.slot;
    tracing::warn!(app = %view.config.name, instance = slot, pid = inst.pid, "restarting: {reason}");
    swap(
        app,
        slot,
        generation,
        swap_order(&view.config),
        Some(reason),
    )
    .await
    .map(drop)
}

/// Swaps the live process `generation` of `slot` for a new one (started as
/// a restart, for `reason` if supd decided it) in `order`. The new pid, or
/// `None` when, stopping first, the old process had crashed and its restart
/// already replaced it.
async fn swap(
    app: &AppHandle,
    slot: u32,
    generation: u64,
    order: Order,
    reason: Option<&str>,
) -> Result<Option<u32>, AppError> {
    match order {
        Order::StartFirst => {
            let pid = relaunch(app, slot, reason).await?;
            if !app.supersede(generation).await {
                return Err(AppError::Failed(format!(
                    "app \"{}\" instance {slot}: the new process exited right after becoming ready",
                    app.view().config.name
                )));
            }
            Ok(Some(pid))
        }
        Order::StopFirst => {
            // The record stays (stopped) so the new process inherits its
            // restart count.
            app.retire(generation, Retire::Keep).await;
            if slot_is_live(app, slot) {
                return Ok(None);
            }
            relaunch(app, slot, reason).await.map(Some)
        }
    }
}

/// Whether `slot` has a process starting or serving.
fn slot_is_live(app: &AppHandle, slot: u32) -> bool {
    app.view()
        .instances
        .iter()
        .any(|i| i.slot == slot && i.is_serving())
}

/// A graceful restart of the whole app on its `cron_restart` schedule (see
/// [`restart_because`]), if it is online.
pub async fn scheduled_restart(
    app: &AppHandle,
    reason: &str,
    progress: &Progress,
) -> Result<(), AppError> {
    let _op = app.begin().await;
    if !app
        .view()
        .instances
        .iter()
        .any(|i| i.status == Status::Online)
    {
        return Ok(());
    }
    restart_whole(app, reason, progress).await
}

/// A graceful restart of the whole app that supd decided (files it watches
/// changed), `reason` shown by `show` on every instance: the reload way,
/// each instance swapped in the order [`swap_order`] picks, so where the
/// daemon holds the port no request fails. Slots that are down (errored,
/// stopped) are started too; an app stopped since the change was seen
/// (every instance stopped) is left alone.
pub async fn restart_because(
    app: &AppHandle,
    reason: &str,
    progress: &Progress,
) -> Result<(), AppError> {
    let _op = app.begin().await;
    if all_stopped(&app.view()) {
        return Ok(());
    }
    restart_whole(app, reason, progress).await
}

/// Whether every instance of the app is stopped: a `stop`, or never
/// started (a moment of a restart, too, while its operation runs). Such an
/// app is not watched.
pub fn all_stopped(view: &AppView) -> bool {
    view.instances.iter().all(|i| i.status == Status::Stopped)
}

/// [`restart_because`], under the operation lock.
async fn restart_whole(app: &AppHandle, reason: &str, progress: &Progress) -> Result<(), AppError> {
    roll(app, progress, Some(reason)).await
}

/// Changes the instance count, within `max_instances`.
pub async fn scale(app: &AppHandle, to: ScaleTo, progress: &Progress) -> Result<(), AppError> {
    let _op = app.begin().await;
    let config = app.view().config;
    let current = config.instances;
    let target = match to {
        ScaleTo::Exactly(n) => Some(n),
        ScaleTo::Add(n) => current.checked_add(n),
        ScaleTo::Remove(n) => current.checked_sub(n),
    };
    let name = &config.name;
    let target = match target {
        Some(n) if n >= 1 => {
            check_instance_count(i64::from(n))
                .map_err(|e| format!("app \"{name}\": refused to scale: {e}"))?;
            n
        }
        _ => {
            return Err(AppError::Failed(format!(
                "app \"{name}\": cannot scale to fewer than 1 instance (use stop)"
            )));
        }
    };
    if let Some(max) = config.max_instances
        && target > max
    {
        let reason = config
            .max_instances_reason
            .as_deref()
            .unwrap_or("max_instances");
        return Err(AppError::Failed(format!(
            "app \"{name}\": refused to scale to {target} instances: max_instances is {max} ({reason})"
        )));
    }
    resize(app, target, progress).await
}

/// The reload itself, slot by slot in the order [`swap_order`] picks:
/// start the new process, wait until it is ready, then retire the old one;
/// or, for an app capped at one instance or a fork app without a
/// daemon-held port, stop the old one first, so two never run at once (a
/// held socket queues clients through the gap). The first failure stops
/// the reload. `reason`, when supd decided the reload, is recorded on
/// every instance.
async fn roll(app: &AppHandle, progress: &Progress, reason: Option<&str>) -> Result<(), AppError> {
    let view = app.view();
    let name = view.config.name.clone();
    let order = swap_order(&view.config);
    for slot in 0..view.config.instances {
        let old = app
            .view()
            .instances
            .iter()
            .find(|i| i.slot == slot && i.is_serving())
            .map(|i| (i.generation, i.pid));
        let failed = |e: AppError| {
            e.explained(|e| {
                format!(
                    "reload of \"{name}\" stopped at instance {slot}: {e}; the other instances keep serving"
                )
            })
        };
        let pid = match old {
            Some((generation, _)) => match swap(app, slot, generation, order, reason).await {
                Ok(Some(pid)) => pid,
                Ok(None) => continue,
                Err(e) if order == Order::StopFirst => {
                    return Err(e.explained(|e| format!(
                        "reload of \"{name}\" failed at instance {slot}: {e}; it was stopped first (two copies never run at once), so it is down"
                    )));
                }
                Err(e) => return Err(failed(e)),
            },
            None => relaunch(app, slot, reason).await.map_err(failed)?,
        };
        let before = old
            .and_then(|(_, pid)| pid)
            .map_or("-".to_string(), |p| p.to_string());
        let _ = progress.send(format!("{name}[{slot}]: pid {before} -> {pid}, online"));
    }
    Ok(())
}

/// Adds slots (each ready before it receives connections) or removes the
/// highest ones: connections are steered away from them first, their accept
/// queues drain into their workers, and only then are the workers stopped
/// and the sockets closed, so no queued connection is reset.
async fn resize(app: &AppHandle, target: u32, progress: &Progress) -> Result<(), AppError> {
    let view = app.view();
    let (name, current) = (view.config.name.clone(), view.config.instances);
    if target > current {
        resize_config(app, target).await?;
        for slot in current..target {
            let launched = app.launch(slot, Launch::Start).await;
            let Ok(pid) = launched else {
                // Count only the slots that started.
                for generation in generations(app, |s| s >= slot) {
                    app.retire(generation, Retire::Remove).await;
                }
                resize_config(app, slot).await?;
                app.route(slot).await?;
                return launched.map(drop);
            };
            let _ = progress.send(format!("{name}[{slot}]: started pid {pid}, online"));
        }
        app.route(target).await?;
    } else if target < current {
        app.route(target).await?;
        for slot in (target..current).rev() {
            drain(app, slot).await;
            for generation in generations(app, |s| s == slot) {
                app.retire(generation, Retire::Remove).await;
            }
            let _ = progress.send(format!("{name}[{slot}]: stopped and removed"));
        }
        resize_config(app, target).await?;
        app.route(target).await?;
    }
    Ok(())
}

/// Waits (at most [`DRAIN_LIMIT`]) until the accept queue of `slot` has been
/// empty on two looks in a row, so connections that raced the steering
/// change are accepted by the slot's worker before it stops.
async fn drain(app: &AppHandle, slot: u32) {
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    let mut empty_looks = 0;
    while empty_looks < 2 && tokio::time::Instant::now() < deadline {
        empty_looks = if app.queued(slot).await == 0 {
            empty_looks + 1
        } else {
            0
        };
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Sets the configured instance count.
async fn resize_config(app: &AppHandle, instances: u32) -> Result<(), AppError> {
    let mut config = (*app.view().config).clone();
    config.instances = instances;
    app.configure(config, None).await
}

/// Forgets records of slots beyond the configured count (all stopped).
async fn trim_slots(app: &AppHandle) {
    let n = app.view().config.instances;
    for generation in generations(app, |slot| slot >= n) {
        app.retire(generation, Retire::Remove).await;
    }
}

/// The generations of the records whose slot matches.
fn generations(app: &AppHandle, slot: impl Fn(u32) -> bool) -> Vec<u64> {
    app.view()
        .instances
        .iter()
        .filter(|i| slot(i.slot))
        .map(|i| i.generation)
        .collect()
}

/// Launches `slot` as a restart, recording `reason` if supd decided it.
async fn relaunch(app: &AppHandle, slot: u32, reason: Option<&str>) -> Result<u32, AppError> {
    match reason {
        Some(reason) => app.launch_because(slot, reason).await,
        None => app.launch(slot, Launch::Restart).await,
    }
}

/// Launches every configured slot at once, each as `kind`; the first
/// failure is returned after all have answered.
async fn launch_all(app: &AppHandle, kind: Launch) -> Result<(), AppError> {
    let mut tasks = JoinSet::new();
    for slot in 0..app.view().config.instances {
        let app = app.clone();
        tasks.spawn(async move { app.launch(slot, kind).await.map(drop) });
    }
    all_or_first_error(tasks).await
}

/// Waits for every task, then returns the first failure if any did (a task
/// that panicked counts as one): work started on several slots or apps at
/// once is never abandoned half-way because one of them failed.
pub async fn all_or_first_error(mut tasks: JoinSet<Result<(), AppError>>) -> Result<(), AppError> {
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let result = done.unwrap_or_else(|e| Err(AppError::Failed(e.to_string())));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
