//! The request dispatcher: one arm per request, each answered by a function
//! of its own (as mini-redis's `cmd/*`), and the one rule every request that
//! changes apps obeys.
//!
//! Reading how a request is handled means opening one function: the read
//! only queries are in [`super::queries`], starts from a file in
//! [`super::start`], operations on running apps in [`super::operate`], the
//! process list in [`super::saved`]. A request that changes apps is answered
//! only once the apps' triggers follow the change (see
//! [`Registry::triggers_caught_up`]: files watched after a start, no longer
//! after a stop) and the state file shows it (see [`Registry::persist`]): a
//! daemon that dies right after the answer loses nothing it said was done.

use supd_proto::{Request, Response};

use super::{operate, queries, saved, start};
use crate::ops::Progress;
use crate::registry::Registry;
use crate::update;

/// Answers one request; long operations report steps on `progress`.
/// A request that changes apps returns once the state file shows it.
pub async fn handle(registry: &Registry, request: Request, progress: &Progress) -> Response {
    let changes_apps = changes_apps(&request);
    let result = match request {
        Request::Ping => Ok(queries::ping(registry).await),
        Request::Update => update::update(registry, registry.image(), progress).await,
        Request::Start {
            apps,
            base_env,
            daemon,
        } => start::start(registry, apps, base_env, daemon).await,
        Request::StartKnown { targets } => start::start_known(registry, &targets).await,
        Request::Stop { target } => operate::stop(registry, &target).await,
        Request::Restart { target } => operate::restart(registry, &target).await,
        Request::Reload { target } => operate::reload(registry, &target, progress).await,
        Request::ReloadApps {
            apps,
            base_env,
            daemon,
        } => start::reload_apps(registry, apps, base_env, daemon, progress).await,
        Request::Scale { name, to } => operate::scale(registry, name, to, progress).await,
        Request::Delete { target } => operate::delete(registry, &target).await,
        Request::List => Ok(queries::list(registry)),
        Request::Show { name } => queries::show(registry, &name),
        Request::LogFiles { target } => queries::log_files(registry, &target),
        Request::Flush { target } => operate::flush(registry, &target).await,
        Request::Signal { signal, target } => operate::signal(registry, &signal, &target).await,
        Request::Env { name, instance } => queries::env(registry, &name, instance).await,
        Request::Reset { target } => operate::reset(registry, &target).await,
        Request::Save => saved::save(registry).await,
        Request::Resurrect => saved::resurrect(registry).await,
        Request::Kill => operate::kill(registry).await,
    };
    // A change the state file does not show would be lost with the
    // daemon: the command must not claim success (a failed command
    // reports its own error first).
    let recorded = if changes_apps {
        registry.triggers_caught_up().await;
        registry.persist().await
    } else {
        Ok(())
    };
    let result = result.and_then(|response| recorded.map(|()| response).map_err(unrecorded));
    result.unwrap_or_else(|message| Response::Error { message })
}

/// Whether `request` changes apps, so its answer waits for the state file.
fn changes_apps(request: &Request) -> bool {
    matches!(
        request,
        Request::Start { .. }
            | Request::StartKnown { .. }
            | Request::Stop { .. }
            | Request::Restart { .. }
            | Request::Reload { .. }
            | Request::ReloadApps { .. }
            | Request::Scale { .. }
            | Request::Delete { .. }
            | Request::Resurrect
    )
}

/// The error of a command whose change could not be recorded.
fn unrecorded(e: String) -> String {
    format!(
        "done, but not recorded ({e}): if the daemon died now, this change would be lost; fix the cause and run the command again"
    )
}
