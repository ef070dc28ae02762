//! `supctl update`: the daemon replaces its own image with the binary now
//! installed where it was started from, the way systemd's `daemon-reexec`
//! does, and no app notices.
//!
//! 1. The new binary is checked first: run as `supd --handover-check FILE` on
//!    a description of the current apps, it must read it. A binary that
//!    cannot run, or cannot read this daemon's handover, is refused and
//!    nothing changes.
//! 2. Every app's operation lock is taken (no reload or scale is midway),
//!    the reaper pauses (exits stay with the kernel, as zombies), and every
//!    app actor freezes: its log thread writes what it has read and gives
//!    its pipes back.
//! 3. The [`Handover`] is written and the daemon `execve`s the new binary
//!    with `--handover FILE`: same pid, so the apps stay its children, and
//!    the descriptors named in the handover stay open. The next image takes
//!    them over ([`resume`]) and goes on; clients that connect meanwhile
//!    wait in the control socket's backlog.
//!
//! If the exec itself fails, everything is thawed and the error is the
//! answer.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use supd_proto::Response;
use supd_supervisor::{Exit, Reaper, SpawnSpec};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::app::SharedEnvs;
use crate::handover::{self, FrozenApp, Handover};
use crate::image::Image;
use crate::ops::Progress;
use crate::registry::Registry;

/// The longest the new binary may take to check the handover.
const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// Runs `supctl update`; returns only if the daemon was not replaced.
pub async fn update(
    registry: &Registry,
    image: &Image,
    progress: &Progress,
) -> Result<Response, String> {
    let home = registry.home();
    let binary = &image.binary;
    // 1. The new binary reads a handover of the apps as they are now.
    let metrics = registry.metrics_address().await;
    let draft = handover_of(registry, image, metrics, registry.describe());
    let path = Handover::path(&home);
    write(&path, &draft)?;
    let checked = check_binary(registry.reaper(), binary, &path).await;
    let _ = std::fs::remove_file(&path);
    let version = checked.map_err(|e| format!("update refused, nothing changed: {e}"))?;
    let _ = progress.send(format!("checked {}: {version}", binary.display()));

    // 2. Everything stands still; no app is added from here on.
    registry.set_updating(true);
    let _ops = registry.lock_operations().await;
    let reaper = registry.reaper();
    reaper.pause();
    let apps = registry.freeze().await;
    let processes: usize = apps.iter().map(|a| a.processes.len()).sum();
    let _ = progress.send(format!(
        "handing over {} app(s) and {processes} process(es)",
        apps.len()
    ));

    // 3. The exec; returning from it means it failed.
    let handover = handover_of(registry, image, metrics, apps);
    let failure = match write(&path, &handover).and_then(|()| {
        handover
            .pass(true)
            .map_err(|e| format!("cannot pass the descriptors on: {e}"))
    }) {
        Ok(()) => {
            tracing::info!(binary = %binary.display(), "update: re-executing");
            exec(binary, &path)
        }
        Err(e) => e,
    };
    tracing::error!("update failed: {failure}");
    let _ = handover.pass(false);
    let _ = std::fs::remove_file(&path);
    registry.thaw().await;
    reaper.resume();
    registry.set_updating(false);
    Err(format!("update failed, nothing changed: {failure}"))
}

/// The handover of `apps` from this image.
fn handover_of(
    registry: &Registry,
    image: &Image,
    metrics: Option<std::net::SocketAddr>,
    apps: Vec<FrozenApp>,
) -> Handover {
    Handover {
        version: handover::VERSION,
        from_version: env!("CARGO_PKG_VERSION").to_string(),
        control: image.control,
        lock: image.lock,
        daemon: registry.daemon_config(),
        sample_interval_ms: registry.sample_interval().as_millis() as u64,
        metrics,
        open_files: supd_supervisor::limits::inherited(),
        apps,
    }
}

/// Writes the handover, readable by our user only (never through a link
/// planted at its name).
fn write(path: &Path, handover: &Handover) -> Result<(), String> {
    let bytes =
        serde_json::to_vec(handover).map_err(|e| format!("cannot encode the handover: {e}"))?;
    crate::home::write_atomically(path, &bytes, false).map_err(|e| e.to_string())
}

/// Replaces this image with `binary`, which takes over from `handover`;
/// returns only why it could not.
fn exec(binary: &Path, handover: &Path) -> String {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let args = [
        binary.as_os_str().as_bytes(),
        b"--handover",
        handover.as_os_str().as_bytes(),
    ];
    let args: Result<Vec<CString>, _> = args.iter().map(|a| CString::new(*a)).collect();
    let Ok(args) = args else {
        return "a path holds a NUL byte".to_string();
    };
    match nix::unistd::execv(&args[0], &args) {
        Err(e) => format!("cannot execute {}: {e}", binary.display()),
    }
}

/// Runs `binary --handover-check FILE`; the version it reports, or why it
/// failed.
async fn check_binary(reaper: Reaper, binary: &Path, handover: &Path) -> Result<String, String> {
    let program = binary.to_string_lossy();
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot create a pipe: {e}"))?;
    let err_w = out_w
        .try_clone()
        .map_err(|e| format!("cannot create a pipe: {e}"))?;
    let args = [
        "--handover-check".to_string(),
        handover.display().to_string(),
    ];
    let env = std::env::vars().collect();
    let spec = SpawnSpec {
        program: &program,
        args: &args,
        cwd: Path::new("/"),
        env: &env,
        stdout: out_w,
        stderr: err_w,
        pass_fds: Vec::new(),
        listen_pid: false,
    };
    let (pid, exit) = reaper
        .spawn(spec)
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut said = String::new();
    let mut output = tokio::net::unix::pipe::Receiver::from_owned_fd(out_r)
        .map_err(|e| format!("cannot read {program}'s output: {e}"))?;
    let finished = tokio::time::timeout(CHECK_LIMIT, async {
        let _ = output.read_to_string(&mut said).await;
        exit.await
    })
    .await;
    let said = said.trim().to_string();
    match finished {
        Ok(Ok(Exit::Code(0))) => Ok(said),
        Ok(Ok(exit)) => Err(format!(
            "{program} --handover-check failed ({}): {}",
            crate::instance::describe_exit(exit),
            said.lines().last().unwrap_or("no output")
        )),
        Ok(Err(_)) => Err(format!("{program} --handover-check: exit status lost")),
        Err(_) => {
            supd_supervisor::group::signal(pid, nix::sys::signal::Signal::SIGKILL);
            Err(format!(
                "{program} --handover-check did not answer within {CHECK_LIMIT:?}"
            ))
        }
    }
}

/// `supd --handover-check FILE`: can this binary take over from that
/// handover? Prints its version on success.
pub fn check(path: &Path) -> Result<String, String> {
    read(path)?;
    Ok(format!(
        "supd {} (handover format {})",
        env!("CARGO_PKG_VERSION"),
        handover::VERSION
    ))
}

/// Reads a handover and checks its version.
pub fn read(path: &Path) -> Result<Handover, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let handover: Handover = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a handover this supd can read: {e}", path.display()))?;
    if handover.version != handover::VERSION {
        return Err(format!(
            "{}: handover format {} (this supd reads {})",
            path.display(),
            handover.version,
            handover::VERSION
        ));
    }
    Ok(handover)
}

/// The pids of the processes a handover names: the reaper adopts them
/// before it reaps anything.
pub fn adopted_pids(handover: &Handover) -> Vec<u32> {
    handover
        .apps
        .iter()
        .flat_map(|a| a.instances.iter().filter_map(|i| i.pid))
        .collect()
}

/// Rebuilds the registry's apps from a handover, with the exits the reaper
/// adopted (in the order of [`adopted_pids`]).
pub fn resume(
    registry: &Registry,
    handover: Handover,
    exits: Vec<oneshot::Receiver<Exit>>,
) -> Result<(), String> {
    let mut exits: HashMap<u32, oneshot::Receiver<Exit>> =
        adopted_pids(&handover).into_iter().zip(exits).collect();
    let (apps, processes) = (handover.apps.len(), exits.len());
    let mut envs = SharedEnvs::default();
    for app in handover.apps {
        registry.resume_app(app, &mut exits, &mut envs)?;
    }
    tracing::info!(
        from = %handover.from_version,
        "took over {apps} app(s) and {processes} process(es) from the previous image"
    );
    Ok(())
}
