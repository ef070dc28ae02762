//! `supctl startup` / `unstartup`: a systemd unit that runs supd at boot and
//! resurrects the saved process list.
//!
//! The unit passes no daemon settings: `supd --resurrect` takes them from the
//! dump `supctl save` wrote (metrics address, sample interval, log rotation
//! defaults), so the unit never goes stale when they change — save again.
//!
//! The unit is `Type=notify` (supd tells systemd `READY=1` once its socket
//! accepts), runs as the calling user with that user's `SUPD_HOME`, and uses
//! `KillMode=mixed`: stopping the unit sends SIGTERM to supd alone, which
//! stops every app gracefully (`kill_signal`, `kill_timeout`) before exiting;
//! only what is still left after `TimeoutStopSec` gets SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use supd_proto::Home;

/// Where `--install` writes units.
const UNIT_DIR: &str = "/etc/systemd/system";

/// The unit's name for `user`.
fn unit_name(user: &str) -> String {
    format!("supd-{user}.service")
}

/// The user we run as, and our `supd` binary.
fn identity() -> anyhow::Result<(String, PathBuf)> {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let exe = std::env::current_exe().context("cannot find the supctl binary")?;
    let supd = exe.with_file_name("supd");
    if !supd.exists() {
        bail!("cannot find supd next to {}", exe.display());
    }
    Ok((user, supd.canonicalize().unwrap_or(supd)))
}

/// The unit text.
pub fn unit(user: &str, supd: &Path, home: &Home) -> String {
    format!(
        "[Unit]\n\
         Description=supd process supervisor for {user}\n\
         After=network.target\n\
         \n\
         [Service]\n\
         Type=notify\n\
         User={user}\n\
         Environment=SUPD_HOME={home}\n\
         ExecStart={supd} --resurrect\n\
         KillMode=mixed\n\
         TimeoutStopSec=120\n\
         Restart=on-failure\n\
         LimitNOFILE=65536\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        home = home.dir().display(),
        supd = supd.display(),
    )
}

/// Prints the unit, or with `install` writes, reloads and enables it.
pub fn startup(home: &Home, install: bool) -> anyhow::Result<ExitCode> {
    let (user, supd) = identity()?;
    let text = unit(&user, &supd, home);
    if !install {
        print!("{text}");
        eprintln!(
            "# install it with: sudo supctl startup --install (or save it as {UNIT_DIR}/{})",
            unit_name(&user)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !nix::unistd::getuid().is_root() {
        bail!("--install writes {UNIT_DIR} and needs root: run it with sudo");
    }
    let path = Path::new(UNIT_DIR).join(unit_name(&user));
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", &unit_name(&user)])?;
    println!(
        "enabled {}: supd starts at boot and resurrects the list saved by `supctl save`",
        unit_name(&user)
    );
    Ok(ExitCode::SUCCESS)
}

/// Disables and removes the unit written by `startup --install`.
pub fn unstartup() -> anyhow::Result<ExitCode> {
    let (user, _) = identity()?;
    let name = unit_name(&user);
    let path = Path::new(UNIT_DIR).join(&name);
    if !path.exists() {
        println!("{} does not exist: nothing to remove", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if !nix::unistd::getuid().is_root() {
        bail!("removing {} needs root: run it with sudo", path.display());
    }
    systemctl(&["disable", &name])?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    println!("disabled {name} and removed {}", path.display());
    systemctl(&["daemon-reload"])?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `systemctl ARGS`, saying what it ran.
fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .context("cannot run systemctl (is this a systemd machine?)")?;
    if !status.success() {
        bail!("systemctl {} failed ({status})", args.join(" "));
    }
    println!("ran systemctl {}", args.join(" "));
    Ok(())
}
