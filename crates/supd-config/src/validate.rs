//! [`AppConfig::validate`](crate::AppConfig::validate): the invariants of a
//! resolved app, for apps that did not come from a file (`supctl start CMD`)
//! and for configs received over the wire.

use std::time::Duration;

use crate::values::{self, bounds};
use crate::{AppConfig, DaemonConfig, HealthProbe};

/// Checks `app`; the message starts with the offending key.
pub(crate) fn validate(app: &AppConfig) -> Result<(), String> {
    let key = |key: &str, check: Result<(), String>| check.map_err(|m| format!("{key}: {m}"));
    key("name", values::check_name(&app.name))?;
    if app.script.trim().is_empty() {
        return Err("script: must not be empty".into());
    }
    if app.instances == 0 {
        return Err("instances: must be at least 1".into());
    }
    key(
        "instances",
        values::check_instance_count(i64::from(app.instances)),
    )?;
    if app.max_instances == Some(0) {
        return Err("max_instances: must be at least 1".into());
    }
    key(
        "instances",
        values::check_instance_cap(
            app.instances,
            app.max_instances,
            app.max_instances_reason.as_deref(),
        ),
    )?;
    if app.port == Some(0) {
        return Err("port: 0 is out of range (1-65535)".into());
    }
    if let Some(host) = app.host {
        if app.port.is_none() {
            return Err("host: has no effect without port".into());
        }
        key("host", values::check_host(host))?;
    }
    if app.max_memory_restart == Some(0) {
        return Err("max_memory_restart: 0 bytes is impossible; a size must be more than 0".into());
    }
    if app.exp_backoff_restart_delay == Some(Duration::ZERO) {
        return Err("exp_backoff_restart_delay: must be more than 0".into());
    }
    match values::parse_signal(&app.kill_signal) {
        Ok(normal) if normal == app.kill_signal => {}
        Ok(normal) => {
            return Err(format!(
                "kill_signal: write {:?} as {normal:?}",
                app.kill_signal
            ));
        }
        Err(message) => return Err(format!("kill_signal: {message}")),
    }
    key("instance_var", values::check_env_name(&app.instance_var))?;
    for name in app.env.keys() {
        key("env", values::check_env_name(name))?;
    }
    if let Some(cron) = &app.cron_restart {
        key("cron_restart", values::check_cron(cron))?;
    }
    if let Some(format) = &app.log_date_format {
        key("log_date_format", values::check_date_format(format))?;
    }
    if let Some(check) = &app.health_check {
        key(
            "health_check",
            HealthProbe::parse(check, app.port).map(drop),
        )?;
    }
    key(
        "health_interval",
        values::check_duration_bounds(app.health_interval, bounds::HEALTH_INTERVAL_MIN, None),
    )?;
    key(
        "health_timeout",
        values::check_duration_bounds(app.health_timeout, bounds::HEALTH_TIMEOUT_MIN, None),
    )?;
    if app.health_retries == 0 {
        return Err("health_retries: must be at least 1".into());
    }
    if let Some(period) = app.watchdog {
        key(
            "watchdog",
            values::check_duration_bounds(period, bounds::WATCHDOG_MIN, None),
        )?;
    }
    if let Some(bytes) = app.log_max_size {
        key("log_max_size", values::check_log_size(bytes))?;
    }
    if app.log_retain == Some(0) {
        return Err("log_retain: must be at least 1".into());
    }
    if let Some(cron) = &app.log_rotate_interval {
        key("log_rotate_interval", values::check_rotate_schedule(cron))?;
    }
    if let Some(path) = app.watch.iter().find(|p| !p.is_absolute()) {
        return Err(format!(
            "watch: {:?} is not an absolute path",
            path.display()
        ));
    }
    for (name, path) in [
        ("out_file", &app.out_file),
        ("error_file", &app.error_file),
        ("log_file", &app.log_file),
        ("pid_file", &app.pid_file),
    ] {
        if let Some(path) = path.as_ref().filter(|p| !p.is_absolute()) {
            return Err(format!(
                "{name}: {:?} is not an absolute path",
                path.display()
            ));
        }
    }
    for pattern in &app.ignore_watch {
        key("ignore_watch", values::check_glob(pattern))?;
    }
    Ok(())
}

/// Checks `daemon`; the message starts with the offending key.
pub(crate) fn validate_daemon(daemon: &DaemonConfig) -> Result<(), String> {
    let key = |key: &str, check: Result<(), String>| check.map_err(|m| format!("{key}: {m}"));
    key(
        "sample_interval",
        values::check_duration_bounds(
            daemon.sample_interval,
            bounds::SAMPLE_INTERVAL_MIN,
            Some(bounds::SAMPLE_INTERVAL_MAX),
        ),
    )?;
    if daemon.metrics.is_some_and(|addr| addr.port() == 0) {
        return Err("metrics: port 0 is not allowed (the endpoint needs a known port)".into());
    }
    if let Some(bytes) = daemon.log_max_size {
        key("log_max_size", values::check_log_size(bytes))?;
    }
    if daemon.log_retain == 0 {
        return Err("log_retain: must be at least 1".into());
    }
    if let Some(cron) = &daemon.log_rotate_interval {
        key("log_rotate_interval", values::check_rotate_schedule(cron))?;
    }
    Ok(())
}
