//! What each format loses of an app's keys: one table, so that the three
//! exports word it alike (docs/scaling-out.md shows it, with what each
//! format keeps, as a table for people).
//!
//! A key counts only when the app sets it to something else than supd's
//! default: a file that never wrote `max_restarts` loses nothing when an
//! engine has its own back-off.

use std::fmt;
use std::path::PathBuf;

use supd_config::{AppConfig, Readiness};

use crate::Warning;

/// The engines an ecosystem exports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Deployments, StatefulSets and Services.
    Kubernetes,
    /// Service, socket and target units.
    Systemd,
    /// A Compose file (docker compose, Swarm's `docker stack deploy`).
    Compose,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Kubernetes => "Kubernetes",
            Format::Systemd => "systemd",
            Format::Compose => "Compose",
        })
    }
}

/// One key's fate: `None` where the format expresses it, else why not and
/// what to do instead.
struct Row {
    /// The key as the file writes it.
    key: &'static str,
    /// Whether `app` sets it in a way that matters (given supd's `defaults`).
    set: fn(app: &AppConfig, defaults: &AppConfig) -> bool,
    /// Its fate in Kubernetes manifests.
    kubernetes: Option<&'static str>,
    /// In systemd units.
    systemd: Option<&'static str>,
    /// In a Compose file.
    compose: Option<&'static str>,
}

/// Why a container format loses a log file.
const ENGINE_LOGS: &str =
    "a container's output goes to the engine's log (kubectl logs, docker logs)";
/// Why a container format loses log rotation.
const ENGINE_ROTATES: &str = "the engine keeps and rotates container output";
/// Why systemd loses log rotation.
const JOURNAL_ROTATES: &str = "journald keeps and rotates the output (journald.conf)";

/// The keys no export keeps as they are, in the order warnings print.
const ROWS: &[Row] = &[
    Row {
        key: "cron_restart",
        set: |app, _| app.cron_restart.is_some(),
        kubernetes: Some(
            "no periodic restart: a CronJob running `kubectl rollout restart` does it",
        ),
        systemd: Some("no periodic restart: a timer unit running `systemctl restart` does it"),
        compose: Some(
            "no periodic restart: a host cron job running `docker compose restart` does it",
        ),
    },
    Row {
        key: "watch",
        set: |app, _| !app.watch.is_empty(),
        kubernetes: Some("no restart on file changes: a new image is a new rollout"),
        systemd: Some("no restart on file changes: a .path unit can run `systemctl restart`"),
        compose: Some(
            "no restart on file changes: `docker compose watch` has its own `develop` section",
        ),
    },
    Row {
        key: "autorestart",
        set: |app, _| !app.autorestart,
        kubernetes: Some("false: a Deployment's pods always restart (a Job runs once)"),
        systemd: None,
        compose: None,
    },
    Row {
        key: "stop_exit_codes",
        set: |app, _| !app.stop_exit_codes.is_empty(),
        kubernetes: Some("pods restart whatever their exit code"),
        systemd: None,
        compose: Some("`restart: always` restarts whatever the exit code"),
    },
    Row {
        key: "max_restarts",
        set: |app, d| app.max_restarts != d.max_restarts || app.min_uptime != d.min_uptime,
        kubernetes: Some(
            "the kubelet never gives up: it backs off (CrashLoopBackOff, 10 s doubling to 5 min)",
        ),
        systemd: None,
        compose: Some("Compose's `restart` never gives up"),
    },
    Row {
        key: "restart_delay",
        set: |app, d| app.restart_delay != d.restart_delay,
        kubernetes: Some("the kubelet picks its own delay (10 s doubling to 5 min)"),
        systemd: None,
        compose: Some("Compose restarts at once (Swarm's deploy.restart_policy.delay has one)"),
    },
    Row {
        key: "exp_backoff_restart_delay",
        set: |app, _| app.exp_backoff_restart_delay.is_some(),
        kubernetes: Some("the kubelet backs off on its own (10 s doubling to 5 min)"),
        systemd: Some("systemd 254's RestartSteps= would; a fixed RestartSec= is written"),
        compose: Some("Compose restarts at once"),
    },
    Row {
        key: "kill_signal",
        set: |app, _| app.kill_signal != "SIGTERM",
        kubernetes: Some(
            "a container is stopped with its image's STOPSIGNAL (SIGTERM unless the image sets one): set STOPSIGNAL to this kill_signal in the image",
        ),
        systemd: None,
        compose: None,
    },
    Row {
        key: "wait_ready",
        set: |app, _| {
            app.readiness() == Readiness::Notified
                && app.port.is_none()
                && app.health_check.is_none()
        },
        kubernetes: Some(
            "READY=1 has no Kubernetes equivalent and there is no port or health_check to probe: the pod is ready once started",
        ),
        systemd: None,
        compose: Some("READY=1 has no Compose equivalent and there is no health_check to probe"),
    },
    Row {
        key: "wait_ready",
        set: |app, _| {
            app.readiness() == Readiness::Notified
                && app.port.is_some()
                && app.health_check.is_none()
        },
        kubernetes: None,
        systemd: None,
        compose: Some(
            "READY=1 has no Compose equivalent and there is no health_check to probe: the service is healthy once started",
        ),
    },
    Row {
        key: "health_check",
        set: |app, _| app.health_check.is_some(),
        kubernetes: None,
        systemd: Some(
            "systemd has no health checks: an app that sends WATCHDOG=1 gets WatchdogSec= (watchdog)",
        ),
        compose: None,
    },
    Row {
        key: "watchdog",
        set: |app, _| app.watchdog.is_some(),
        kubernetes: Some(
            "WATCHDOG=1 has no Kubernetes equivalent: a livenessProbe (health_check) is the way",
        ),
        systemd: None,
        compose: Some(
            "WATCHDOG=1 has no Compose equivalent: a healthcheck (health_check) is the way",
        ),
    },
    Row {
        key: "host",
        set: |app, _| {
            app.host
                .is_some_and(|h| !h.is_loopback() && !h.is_unspecified())
        },
        kubernetes: Some("a pod listens on its own address: the Service decides who reaches it"),
        systemd: None,
        compose: Some("a container listens on its own address: `ports` decides who reaches it"),
    },
    Row {
        key: "instances",
        set: |app, _| app.instances > 1 && app.port.is_some() && !loopback(app),
        kubernetes: None,
        systemd: None,
        compose: Some(
            "one published port for several replicas: `docker stack deploy` balances it; `docker compose up` can publish it from one container only",
        ),
    },
    Row {
        key: "instance_var",
        set: |app, _| app.instances > 1,
        kubernetes: None,
        systemd: None,
        compose: Some("Compose replicas share one environment: the instance number is not set"),
    },
    Row {
        key: "out_file",
        set: |app, _| app.out_file.is_some() || app.error_file.is_some(),
        kubernetes: Some(ENGINE_LOGS),
        systemd: None,
        compose: Some(ENGINE_LOGS),
    },
    Row {
        key: "log_file",
        set: |app, _| app.log_file.is_some(),
        kubernetes: Some(ENGINE_LOGS),
        systemd: Some("both streams go to the journal (or to out_file/error_file); no third file"),
        compose: Some(ENGINE_LOGS),
    },
    Row {
        key: "merge_logs",
        set: |app, _| !app.merge_logs,
        kubernetes: Some(ENGINE_LOGS),
        systemd: Some("the instances of a template unit share out_file/error_file"),
        compose: Some(ENGINE_LOGS),
    },
    Row {
        key: "pid_file",
        set: |app, _| app.pid_file.is_some(),
        kubernetes: Some("a container has no pid file on the host"),
        systemd: Some("systemd tracks the main pid itself (`systemctl show -p MainPID`)"),
        compose: Some("a container has no pid file on the host"),
    },
    Row {
        key: "log_date_format",
        set: |app, _| app.log_date_format.is_some(),
        kubernetes: Some("the engine timestamps every line (kubectl logs --timestamps)"),
        systemd: Some("journald timestamps every line (journalctl -o short-iso-precise)"),
        compose: Some("the engine timestamps every line (docker compose logs --timestamps)"),
    },
    Row {
        key: "log_max_size",
        set: |app, _| {
            app.log_max_size.is_some()
                || app.log_retain.is_some()
                || app.log_compress.is_some()
                || app.log_rotate_interval.is_some()
        },
        kubernetes: Some(ENGINE_ROTATES),
        systemd: Some(JOURNAL_ROTATES),
        compose: Some(ENGINE_ROTATES),
    },
];

/// Whether `app` listens on loopback only (reached from its own machine).
pub fn loopback(app: &AppConfig) -> bool {
    app.host.is_some_and(|h| h.is_loopback())
}

/// The keys `app` sets that `format` cannot express, as warnings.
pub fn lost(app: &AppConfig, format: Format) -> Vec<Warning> {
    let defaults = AppConfig::with_defaults(String::new(), String::new(), PathBuf::new());
    ROWS.iter()
        .filter(|row| (row.set)(app, &defaults))
        .filter_map(|row| {
            let reason = match format {
                Format::Kubernetes => row.kubernetes,
                Format::Systemd => row.systemd,
                Format::Compose => row.compose,
            }?;
            Some(Warning {
                app: Some(app.name.clone()),
                key: row.key.to_string(),
                message: reason.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(edit: impl FnOnce(&mut AppConfig)) -> AppConfig {
        let mut app = AppConfig::with_defaults("a".into(), "/bin/true".into(), "/".into());
        app.kill_signal = "SIGTERM".into();
        edit(&mut app);
        app
    }

    fn keys(app: &AppConfig, format: Format) -> Vec<String> {
        lost(app, format).into_iter().map(|w| w.key).collect()
    }

    #[test]
    fn defaults_lose_nothing() {
        for format in [Format::Kubernetes, Format::Systemd, Format::Compose] {
            assert_eq!(keys(&app(|_| {}), format), Vec::<String>::new(), "{format}");
        }
    }

    #[test]
    fn each_format_loses_what_it_cannot_say() {
        // (the edit, the key, lost in Kubernetes, systemd, Compose)
        type Edit = fn(&mut AppConfig);
        let table: &[(Edit, &str, [bool; 3])] = &[
            (
                |a| a.cron_restart = Some("0 3 * * *".into()),
                "cron_restart",
                [true, true, true],
            ),
            (
                |a| a.watch = vec!["/src".into()],
                "watch",
                [true, true, true],
            ),
            (
                |a| a.autorestart = false,
                "autorestart",
                [true, false, false],
            ),
            (
                |a| a.stop_exit_codes = vec![0],
                "stop_exit_codes",
                [true, false, true],
            ),
            (|a| a.max_restarts = 3, "max_restarts", [true, false, true]),
            (
                |a| a.min_uptime = std::time::Duration::from_secs(5),
                "max_restarts",
                [true, false, true],
            ),
            (
                |a| a.restart_delay = std::time::Duration::from_secs(4),
                "restart_delay",
                [true, false, true],
            ),
            (
                |a| a.kill_signal = "SIGINT".into(),
                "kill_signal",
                [true, false, false],
            ),
            (|a| a.wait_ready = true, "wait_ready", [true, false, true]),
            (
                |a| a.health_check = Some("true".into()),
                "health_check",
                [false, true, false],
            ),
            (
                |a| a.watchdog = Some(std::time::Duration::from_secs(5)),
                "watchdog",
                [true, false, true],
            ),
            (
                |a| a.host = Some("10.0.0.5".parse().unwrap()),
                "host",
                [true, false, true],
            ),
            (
                |a| {
                    a.instances = 2;
                    a.port = Some(3000)
                },
                "instances",
                [false, false, true],
            ),
            (
                |a| a.out_file = Some("/tmp/o.log".into()),
                "out_file",
                [true, false, true],
            ),
            (
                |a| a.pid_file = Some("/tmp/a.pid".into()),
                "pid_file",
                [true, true, true],
            ),
            (
                |a| a.log_date_format = Some("%H".into()),
                "log_date_format",
                [true, true, true],
            ),
            (
                |a| a.log_retain = Some(3),
                "log_max_size",
                [true, true, true],
            ),
        ];
        for (edit, key, lost_in) in table {
            let app = app(edit);
            for (format, lost) in [Format::Kubernetes, Format::Systemd, Format::Compose]
                .into_iter()
                .zip(lost_in)
            {
                assert_eq!(
                    keys(&app, format).contains(&key.to_string()),
                    *lost,
                    "{key} in {format}: {:?}",
                    keys(&app, format)
                );
            }
        }
    }

    #[test]
    fn a_loopback_port_with_replicas_is_fine_in_compose() {
        let app = app(|a| {
            a.instances = 2;
            a.port = Some(3000);
            a.host = Some("127.0.0.1".parse().unwrap());
        });
        assert_eq!(keys(&app, Format::Compose), ["instance_var"]);
    }
}
