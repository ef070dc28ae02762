//! `pid_file` (PM2's key): each running instance's pid in a file, for tools
//! that expect one (monitoring, logrotate's `postrotate`, init scripts).
//!
//! Instance N's file is the configured path with `-N` before the `.pid`
//! ([`AppConfig::instance_file`], as PM2 names them). It is written when
//! the instance's process starts and removed when that process ends, unless
//! another process of the slot (a reload's) wrote its own pid there since.

use std::fs;
use std::path::{Path, PathBuf};

use supd_config::AppConfig;

/// Instance `slot`'s pid file, if the app has one.
pub fn path(config: &AppConfig, slot: u32) -> Option<PathBuf> {
    let base = config.pid_file.as_deref()?;
    Some(AppConfig::instance_file(base, slot, "pid"))
}

/// Checks that the pid files of `config` can be written: their folder is
/// made if missing (as PM2 does) and must be writable. The message names
/// the key and the folder.
pub fn check(config: &AppConfig) -> Result<(), String> {
    let Some(file) = path(config, 0) else {
        return Ok(());
    };
    let folder = file.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(folder)
        .map_err(|e| format!("pid_file: cannot create {}: {e}", folder.display()))?;
    nix::unistd::access(folder, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| format!("pid_file: cannot write in {}: {e}", folder.display()))
}

/// Writes `pid` to instance `slot`'s pid file; a failure is logged (the
/// instance runs on).
pub fn write(config: &AppConfig, slot: u32, pid: u32) {
    let Some(file) = path(config, slot) else {
        return;
    };
    if let Err(e) = fs::write(&file, format!("{pid}\n")) {
        tracing::warn!(app = %config.name, instance = slot, "cannot write the pid file {}: {e}", file.display());
    }
}

/// Removes instance `slot`'s pid file if it still holds `pid`.
pub fn remove(config: &AppConfig, slot: u32, pid: u32) {
    let Some(file) = path(config, slot) else {
        return;
    };
    let held = fs::read_to_string(&file).ok();
    if held.as_deref().map(str::trim) == Some(pid.to_string().as_str()) {
        let _ = fs::remove_file(&file);
    }
}
