//! `supd`: the supervisor daemon.
//!
//! Normally started by `supctl` (detached, output to `SUPD_HOME/supd.log`);
//! run it by hand or from systemd to keep it in the foreground, or as
//! `supd run FILE` as a container's entry point ([`run`]). One daemon per
//! `SUPD_HOME`, enforced by a lock on `supd.lock`.

mod app;
mod changes;
mod control;
mod daemon_log;
mod dump;
mod handover;
mod home;
mod image;
mod instance;
mod listeners;
mod logs;
mod metrics;
mod monitor;
mod node_preload;
mod ops;
mod pid_file;
mod readiness;
mod recover;
mod registry;
mod replies;
mod run;
mod state;
mod takeover;
mod triggers;
mod unserved;
mod update;
mod views;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use supd_proto::Home;
use supd_supervisor::Reaper;
use tokio::signal::unix::{Signal, SignalKind, signal};

use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use crate::handover::Handover;
use crate::image::Image;
use crate::registry::Registry;

/// The supd daemon. Its state lives in SUPD_HOME (default ~/.supd).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// How often CPU and memory are sampled (e.g. 500ms, 1s; an integer is
    /// milliseconds). An ecosystem file's `[daemon] sample_interval` overrides it.
    #[arg(long, default_value = "1s", value_parser = supd_config::parse_duration)]
    sample_interval: std::time::Duration,
    /// Serve Prometheus metrics at HOST:PORT (/metrics, and /json).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Bring back the saved process list (`supctl save`) at start, with the
    /// daemon settings it saved (metrics address, sample interval, log
    /// rotation defaults), applied as a file's `[daemon]` is.
    #[arg(long)]
    resurrect: bool,
    /// Take over from the previous image (`supctl update` re-executes the
    /// daemon with this).
    #[arg(long, hide = true, value_name = "FILE")]
    handover: Option<PathBuf>,
    /// Check that this binary can take over from a handover, then exit.
    #[arg(long, hide = true, value_name = "FILE")]
    handover_check: Option<PathBuf>,
    #[command(subcommand)]
    mode: Option<Mode>,
}

/// What the daemon does besides serving.
#[derive(clap::Subcommand)]
enum Mode {
    /// Run FILE's apps in the foreground, as a container's entry point
    /// (PID 1): their output on supd's stdout and stderr, each line tagged
    /// `app:N | `; SIGTERM stops every app and supd exits 0. It exits by
    /// itself once no app runs (1 if any ended errored).
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.handover_check {
        return match update::check(path) {
            Ok(version) => {
                println!("{version}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("supd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let (apps, writer) = match &args.mode {
        // In a container everything goes to the engine: our messages on stderr.
        Some(Mode::Run(run_args)) => match run::load(run_args) {
            Ok(apps) => (Some(apps), BoxMakeWriter::new(std::io::stderr)),
            Err(e) => {
                eprintln!("supd: {e:#}");
                return ExitCode::from(2);
            }
        },
        None => match daemon_log::DaemonLog::new(&Home::from_env()) {
            Ok(log) => (None, BoxMakeWriter::new(move || log.clone())),
            Err(e) => {
                eprintln!("supd: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SUPD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Some(Mode::Run(run_args)) = &args.mode {
        logs::print_on_console(run_args.console());
    }
    match run(args, apps) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("supd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets the process up (descriptor limit, home lock, subreaper, runtime)
/// and serves; `apps`, under `supd run`, are started once it serves.
fn run(args: Args, apps: Option<supd_config::Ecosystem>) -> anyhow::Result<ExitCode> {
    // A thousand instances need over 3,000 descriptors; children get the
    // original limit back (after an `update`, the one the handover names).
    // First of all: after an `update` this image holds them all already.
    match supd_supervisor::limits::raise_open_files() {
        Ok((before, after)) if before < after => {
            tracing::info!("open files limit raised from {before} to {after}");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    seal_inherited_fds();
    control::return_large_blocks();
    // After the raise: the connection cap is a share of the new limit.
    let control_limits = control::Limits::from_env().map_err(anyhow::Error::msg)?;
    let home = Home::from_env();
    let handover = match &args.handover {
        Some(path) => {
            let handover = update::read(path).map_err(anyhow::Error::msg)?;
            let _ = std::fs::remove_file(path);
            if let Some((soft, hard)) = handover.open_files {
                supd_supervisor::limits::remember_inherited(soft, hard);
            }
            Some(handover)
        }
        None => None,
    };
    let lock = match &handover {
        // SAFETY: the lock's descriptor in the handover, taken once.
        Some(h) => home::reclaim(unsafe { handover::take(h.lock) })?,
        None => home::claim(&home)?,
    };
    // Orphaned grandchildren are reparented to us, reaped, and never linger.
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(
        home,
        args,
        apps,
        handover,
        lock.as_raw_fd(),
        control_limits,
    ))
}

/// Marks every descriptor we inherited beyond stdio close-on-exec, so a
/// descriptor leaked by whoever started us never reaches an app.
fn seal_inherited_fds() {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: only the flags of the descriptor change; it stays owned by
        // whoever owns it (or by no one, for an inherited one).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
}

/// Serves until told to stop (or, under `supd run`, until no app runs;
/// `apps` are the file's); `handover` when the previous image of this
/// daemon handed its apps over (`update`), `lock` the home's lock,
/// `control_limits` the control socket's budget.
async fn serve(
    home: Home,
    args: Args,
    apps: Option<supd_config::Ecosystem>,
    handover: Option<Handover>,
    lock: RawFd,
    control_limits: control::Limits,
) -> anyhow::Result<ExitCode> {
    // The processes handed over are adopted before anything is reaped.
    let pids = handover
        .as_ref()
        .map(update::adopted_pids)
        .unwrap_or_default();
    let (reaper, exits) = Reaper::adopting(&pids).context("cannot install the SIGCHLD handler")?;
    // Before anyone can reach us: a SIGTERM must always mean "stop the apps first".
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listener = match &handover {
        // SAFETY: the control socket's descriptor in the handover, taken once.
        Some(h) => home::adopt_socket(unsafe { handover::take(h.control) })?,
        None => home::bind_socket(&home)?,
    };
    home::write_pid(&home)?;
    if let Err(e) = node_preload::install(&home) {
        tracing::warn!(
            "cannot write the Node preload: {e}; Node apps must listen on fd 3 themselves"
        );
    }
    let image = Image {
        binary: std::env::current_exe().context("cannot find our own binary")?,
        started_ms: supd_proto::unix_ms(),
        origin: handover.as_ref().map_or("started".into(), |h| {
            format!("updated from supd {}", h.from_version)
        }),
        control: listener.as_raw_fd(),
        lock,
    };
    let sample_interval = handover.as_ref().map_or(args.sample_interval, |h| {
        std::time::Duration::from_millis(h.sample_interval_ms)
    });
    let registry = Registry::new(home.clone(), reaper, sample_interval, image);
    let metrics = handover.as_ref().and_then(|h| h.metrics).or(args.metrics);
    let resumed = handover.is_some();
    if let Some(handover) = handover {
        registry
            .apply_daemon(&handover.daemon)
            .await
            .map_err(anyhow::Error::msg)?;
        update::resume(&registry, handover, exits).map_err(anyhow::Error::msg)?;
    }
    if let Some(addr) = metrics {
        registry
            .serve_metrics(addr)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    // Before any request is served (they wait in the socket's backlog), so
    // that the first answer, `list` included, is already true. After an
    // update the state file describes the apps just taken over: nothing
    // died, nothing to recover.
    // A SIGTERM preempts the recovery too: a state file naming too much
    // work never makes the daemon deaf to it.
    if !resumed {
        tokio::select! {
            () = recover::run(&home, &registry) => {}
            signal = stop_signal(&mut term, &mut int) => {
                tracing::info!("{signal} while replacing the previous supd's apps: stopping every app");
                return shut_down(&home, &registry, ExitCode::SUCCESS).await;
            }
        }
    }
    registry.keep_state().await;
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(control::serve(
        listener,
        registry.clone(),
        shutdown_tx,
        control_limits,
    ));
    if args.resurrect {
        let registry = registry.clone();
        tokio::spawn(async move {
            match control::resurrect(&registry).await {
                Ok(_) => tracing::info!("resurrected the saved process list"),
                Err(e) => tracing::error!("cannot resurrect: {e}"),
            }
        });
    }
    tracing::info!(pid = std::process::id(), home = %home.dir().display(), "supd ready");
    readiness::tell_supervisor("READY=1");
    let running = apps.is_some();
    let ended = async {
        match apps {
            Some(apps) => run::start_and_wait(&registry, apps).await,
            None => std::future::pending().await,
        }
    };

    let code = tokio::select! {
        signal = stop_signal(&mut term, &mut int) => {
            tracing::info!("{signal}: stopping every app");
            ExitCode::SUCCESS
        }
        _ = shutdown_rx.changed() => {
            tracing::info!("kill requested");
            ExitCode::SUCCESS
        }
        ended = ended => {
            tracing::info!("no app runs any more ({ended:?}): supd run ends");
            match ended {
                run::Ended::Stopped => ExitCode::SUCCESS,
                run::Ended::Errored => ExitCode::FAILURE,
            }
        }
    };
    let code = shut_down(&home, &registry, code).await?;
    // In a container, a process that outlived its app's stop is a failure
    // the engine should see.
    let left = if running { run::leftovers() } else { 0 };
    if left > 0 {
        tracing::error!("{left} process(es) survived the stop of every app");
        return Ok(ExitCode::FAILURE);
    }
    Ok(code)
}

/// The first SIGTERM or SIGINT, by name.
async fn stop_signal(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Stops every app (preempting any operation in progress), then removes
/// the daemon's runtime files; exits with `code`.
async fn shut_down(home: &Home, registry: &Registry, code: ExitCode) -> anyhow::Result<ExitCode> {
    readiness::tell_supervisor("STOPPING=1");
    let (progress, _) = tokio::sync::mpsc::unbounded_channel();
    control::handle(registry, supd_proto::Request::Kill, &progress).await;
    registry.end_state().await;
    home::remove_runtime_files(home);
    tracing::info!("supd stopped");
    Ok(code)
}
