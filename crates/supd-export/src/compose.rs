//! Compose: one file, a service per app, for `docker compose` and Swarm's
//! `docker stack deploy`.
//!
//! The meaning kept: `instances` are `deploy.replicas`; a rolling update
//! starts the new container first (`order: start-first`), as supd's reload
//! does, except for a capped app (`max_instances`), whose old container
//! stops first (`order: stop-first`), one at a time, so it never runs
//! twice. A port on loopback is reachable by the other services only
//! (`expose`); a port beyond it is published. `health_check` is the
//! `healthcheck` (its `start_period` the `listen_timeout`).

use supd_config::{AppConfig, HealthProbe, Readiness};

use crate::container::{self, Process};
use crate::fate::{self, Format};
use crate::text;
use crate::yaml::{Value, map, opt, render, seq, strings};
use crate::{Document, Export, Options, vars};

/// The file name with `-o DIR`.
const FILE: &str = "compose.yaml";

/// Every app of `apps` as one Compose file.
pub fn export(apps: &[AppConfig], options: &Options) -> Export {
    let names = container::engine_names(apps);
    let peers = container::peers(apps, &names);
    let mut warnings = Vec::new();
    let mut services = serde_norway::Mapping::new();
    for (app, (name, renamed)) in apps.iter().zip(names) {
        warnings.extend(renamed);
        let process = container::process(app, options, &peers, &mut warnings);
        warnings.extend(fate::lost(app, Format::Compose));
        services.insert(name.into(), service(app, &process, options));
    }
    let text = render(&map([("services", Value::Mapping(services))]));
    Export {
        documents: vec![Document {
            file: FILE.into(),
            text,
        }],
        warnings,
    }
}

/// One service.
fn service(app: &AppConfig, process: &Process, options: &Options) -> Value {
    let mut env = process.env.clone();
    if app.instances == 1 {
        // One replica: its number is 0, as under supd (with more, the
        // replicas share one environment: a warning of `fate`).
        env.extend(
            vars::instance_names(app)
                .into_iter()
                .map(|k| (k.to_string(), "0".into())),
        );
    }
    let loopback = fate::loopback(app);
    map([
        ("image", options.image.as_str().into()),
        ("entrypoint", seq([process.program.as_str().into()])),
        (
            "command",
            seq(process.args.iter().map(|a| a.as_str().into())),
        ),
        ("working_dir", process.working_dir.as_str().into()),
        (
            "environment",
            strings(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        ),
        (
            "expose",
            seq(app.port.filter(|_| loopback).map(|p| p.to_string().into())),
        ),
        (
            "ports",
            seq(app.port.filter(|_| !loopback).map(|port| {
                map([
                    ("target", port.into()),
                    ("published", port.into()),
                    ("protocol", "tcp".into()),
                ])
            })),
        ),
        ("healthcheck", opt(healthcheck(app))),
        (
            "restart",
            if app.autorestart { "always" } else { "no" }.into(),
        ),
        ("stop_signal", app.kill_signal.as_str().into()),
        ("stop_grace_period", text::duration(app.kill_timeout).into()),
        ("deploy", deploy(app)),
        ("labels", labels(app)),
    ])
}

/// Replicas, the update order and the memory limit.
fn deploy(app: &AppConfig) -> Value {
    let order = if app.max_instances.is_some() {
        "stop-first"
    } else {
        "start-first"
    };
    map([
        ("replicas", app.instances.into()),
        (
            "update_config",
            map([("parallelism", 1.into()), ("order", order.into())]),
        ),
        (
            "resources",
            opt(app.max_memory_restart.map(|bytes| {
                map([(
                    "limits",
                    map([("memory", text::size(bytes, text::COMPOSE_UNITS).into())]),
                )])
            })),
        ),
    ])
}

/// The cap and its reason, for whoever scales the service by hand.
fn labels(app: &AppConfig) -> Value {
    let cap = app.max_instances.map(|n| n.to_string());
    strings(
        [
            ("dev.supd.max-instances", cap.as_deref()),
            (
                "dev.supd.max-instances-reason",
                app.max_instances_reason.as_deref(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?))),
    )
}

/// The app's `health_check` (a URL is fetched with `curl`, which the image
/// must have); its `start_period` is the `listen_timeout` of an app that
/// says READY=1. Without a check there is none: a probe of the port alone
/// would need a tool the image may lack.
fn healthcheck(app: &AppConfig) -> Option<Value> {
    let test = match app.health_probe().ok()?? {
        HealthProbe::Command(command) => seq(["CMD-SHELL".into(), command.into()]),
        HealthProbe::Http { url, .. } => seq([
            "CMD".into(),
            "curl".into(),
            "-fsS".into(),
            "-o".into(),
            "/dev/null".into(),
            url.into(),
        ]),
    };
    let start =
        (app.readiness() == Readiness::Notified).then(|| text::duration(app.listen_timeout));
    Some(map([
        ("test", test),
        ("interval", text::duration(app.health_interval).into()),
        ("timeout", text::duration(app.health_timeout).into()),
        ("retries", app.health_retries.into()),
        ("start_period", opt(start)),
    ]))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::{app, documents, get, options};

    /// The one service of `app`, and the warnings' keys.
    fn one(app: AppConfig) -> (Value, Vec<String>) {
        let name = app.name.clone();
        let export = export(&[app], &options());
        let warnings = export.warnings.iter().map(|w| w.key.clone()).collect();
        let doc = documents(&export.documents[0].text).remove(0);
        (get(&doc, &format!("services.{name}")).clone(), warnings)
    }

    #[test]
    fn a_capped_app_stops_before_its_successor_starts() {
        for (cap, order) in [(Some(1), "stop-first"), (None, "start-first")] {
            let (service, _) = one(app("billing", |a| {
                a.max_instances = cap;
                a.max_instances_reason = cap.map(|_| "runs once".into());
            }));
            assert_eq!(get(&service, "deploy.replicas"), 1);
            assert_eq!(get(&service, "deploy.update_config.order"), order);
            assert_eq!(
                !service["labels"]["dev.supd.max-instances-reason"].is_null(),
                cap.is_some()
            );
        }
    }

    #[test]
    fn keys_become_fields() {
        let (service, warnings) = one(app("api", |a| {
            a.instances = 3;
            a.port = Some(3000);
            a.host = Some("127.0.0.1".parse().unwrap());
            a.kill_timeout = Duration::from_millis(1600);
            a.kill_signal = "SIGTERM".into();
            a.max_memory_restart = Some(1 << 30);
            a.health_check = Some("curl -f localhost:$PORT".into());
            a.wait_ready = true;
            a.listen_timeout = Duration::from_secs(8);
            a.autorestart = false;
        }));
        assert_eq!(get(&service, "deploy.replicas"), 3);
        assert_eq!(get(&service, "deploy.resources.limits.memory"), "1g");
        assert_eq!(service["stop_grace_period"], "1600ms");
        assert_eq!(service["stop_signal"], "SIGTERM");
        assert_eq!(service["restart"], "no");
        assert_eq!(service["entrypoint"][0], "/app/bin/app");
        assert_eq!(service["expose"][0], "3000", "loopback: not published");
        assert!(service["ports"].is_null());
        assert_eq!(get(&service, "healthcheck.test.0"), "CMD-SHELL");
        assert_eq!(get(&service, "healthcheck.start_period"), "8s");
        assert_eq!(get(&service, "environment.HOST"), "0.0.0.0");
        assert!(
            service["environment"]["INSTANCE_ID"].is_null(),
            "3 replicas"
        );
        assert_eq!(warnings, ["instance_var"]);
    }

    #[test]
    fn a_port_beyond_loopback_is_published() {
        let (service, warnings) = one(app("web", |a| a.port = Some(8080)));
        assert_eq!(get(&service, "ports.0.published"), 8080);
        assert_eq!(get(&service, "environment.INSTANCE_ID"), "0");
        assert!(service["expose"].is_null());
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
