//! `supd run FILE`: supd in the foreground as a container's entry point
//! (what `pm2-runtime` is to PM2).
//!
//! It is the daemon as always (control socket, so `supctl` works inside the
//! container; cluster mode, reload, memory limits) with three differences:
//! the file's apps are started as `supctl start FILE` would start them; every
//! app's lines are printed on supd's own stdout and stderr
//! ([`crate::logs::Console`]), and the daemon's own messages on its stderr;
//! and the run ends by itself once no app has a process running or about to
//! (they all stopped, or all ended errored), so the engine sees the
//! container exit and restarts it. As PID 1 it reaps every orphan: the
//! daemon is a subreaper that reaps whatever is reparented to it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use supd_config::{Ecosystem, LoadOptions};
use supd_proto::{Outcome, Request, Response};

use crate::control;
use crate::logs::Console;
use crate::registry::Registry;

/// How often the apps are looked at for the end of the run.
const LOOK: Duration = Duration::from_millis(200);

/// `supd run`'s arguments.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The ecosystem file (ecosystem.toml, or a PM2 file as `supctl start` takes).
    pub file: PathBuf,
    /// Start only these apps (comma-separated names).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub only: Option<Vec<String>>,
    /// Apply each app's `env_NAME` over its `env`.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Print the apps' lines as JSON objects (app, instance, stream, line),
    /// one per line, for log collectors.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    /// How the apps' lines are printed.
    pub fn console(&self) -> Console {
        if self.json {
            Console::Json
        } else {
            Console::Tagged
        }
    }
}

/// Reads the file before the daemon takes its home: a bad file is a
/// one-line error and nothing starts. A PM2 file's notes go to stderr.
pub fn load(args: &RunArgs) -> anyhow::Result<Ecosystem> {
    let opts = LoadOptions {
        env: args.env.clone(),
        only: args.only.clone(),
    };
    let (eco, notes) = supd_import::ecosystem(&args.file, &opts)
        .with_context(|| format!("cannot run {}", args.file.display()))?;
    for note in notes {
        eprintln!("{note}");
    }
    Ok(eco)
}

/// How a run ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every app stopped (their processes exited with a stop code, or
    /// `supctl stop` stopped them).
    Stopped,
    /// No app runs, and some ended errored or could not start: the
    /// container should be restarted.
    Errored,
}

/// Starts the file's apps as `supctl start FILE` does, saying on stderr
/// what happened to each; whether every app started.
async fn start(registry: &Registry, eco: Ecosystem) -> bool {
    let request = Request::Start {
        apps: eco.apps,
        base_env: std::env::vars().collect(),
        daemon: Some(eco.daemon),
    };
    let (progress, mut steps) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(step) = steps.recv().await {
            eprintln!("supd: {step}");
        }
    });
    let response = control::handle(registry, request, &progress).await;
    drop(progress);
    let _ = printer.await;
    match response {
        Response::Started { apps } => {
            let mut all = true;
            for app in apps {
                match app.outcome {
                    Outcome::Failed => {
                        all = false;
                        eprintln!(
                            "supd: error: {}",
                            app.error.as_deref().unwrap_or("failed to start")
                        );
                    }
                    _ => eprintln!("supd: started {}", app.name),
                }
            }
            all
        }
        Response::Error { message } => {
            eprintln!("supd: error: {message}");
            false
        }
        _ => false,
    }
}

/// Starts the file's apps, then waits until none runs; an app that could
/// not start makes the end [`Ended::Errored`].
pub async fn start_and_wait(registry: &Registry, eco: Ecosystem) -> Ended {
    let started = start(registry, eco).await;
    match ended(registry).await {
        Ended::Stopped if started => Ended::Stopped,
        _ => Ended::Errored,
    }
}

/// Waits until no instance of any app is running or about to run.
async fn ended(registry: &Registry) -> Ended {
    let mut look = tokio::time::interval(LOOK);
    loop {
        look.tick().await;
        let views = registry.views();
        let instances = || views.iter().flat_map(|v| v.instances.iter());
        if instances().any(|i| i.is_active()) {
            continue;
        }
        return if instances().all(|i| i.status == supd_proto::Status::Stopped) {
            Ended::Stopped
        } else {
            Ended::Errored
        };
    }
}

/// The processes still running under the daemon once every app is
/// stopped (none, unless a process survived SIGKILL).
pub fn leftovers() -> usize {
    supd_supervisor::procfs::descendants(std::process::id())
        .len()
        .saturating_sub(1)
}
