//! Kubernetes: per app a Deployment (a StatefulSet for a capped app) and,
//! with a port, a Service.
//!
//! The meaning kept: `instances` are replicas; a rolling update starts a new
//! pod before it stops an old one (`maxSurge: 1, maxUnavailable: 0`), as
//! supd's reload does. An app with `max_instances` must never run more than
//! that, not even during a rollout or when a node is cut off, which a
//! Deployment does not promise (it replaces a pod it cannot reach); a
//! StatefulSet does (a pod's identity runs at most once), so a capped app
//! is one, its cap and reason as annotations. `health_check` is the
//! livenessProbe (supd replaces an unhealthy instance) and the
//! readinessProbe; an app supd waits for (`wait_ready`, a Node app with a
//! port) is ready when its port accepts, and one that must say READY=1
//! within `listen_timeout` gets a startupProbe of that length.

use supd_config::{AppConfig, HealthProbe, Readiness};

use crate::container::{self, Process};
use crate::fate::{self, Format};
use crate::text;
use crate::yaml::{Value, map, opt, render, seq, strings};
use crate::{Document, Export, Options, Warning, vars};

/// A probe's handler: its kind (`httpGet`, `exec`, `tcpSocket`) and body.
type Handler = (&'static str, Value);

/// The label that ties a workload, its pods and its Service.
const NAME_LABEL: &str = "app.kubernetes.io/name";

/// Every app of `apps` as manifests, one document (file) per app.
pub fn export(apps: &[AppConfig], options: &Options) -> Export {
    let names = container::engine_names(apps);
    let peers = container::peers(apps, &names);
    let mut export = Export::default();
    for (app, (name, renamed)) in apps.iter().zip(&names) {
        let warnings = &mut export.warnings;
        warnings.extend(renamed.clone());
        let process = container::process(app, options, &peers, warnings);
        warnings.extend(fate::lost(app, Format::Kubernetes));
        let probe = health_probe(app, warnings);
        let mut text = render(&workload(app, name, &process, probe, options));
        if let Some(port) = app.port {
            text.push_str("---\n");
            text.push_str(&render(&service(app, name, port)));
        }
        export.documents.push(Document {
            file: format!("{name}.yaml"),
            text,
        });
    }
    export
}

/// The Deployment or StatefulSet.
fn workload(
    app: &AppConfig,
    name: &str,
    process: &Process,
    health: Option<Handler>,
    options: &Options,
) -> Value {
    let capped = app.max_instances.is_some();
    let labels = || strings([(NAME_LABEL, name)]);
    let cap = app.max_instances.map(|n| n.to_string());
    let annotations = strings(
        [
            ("supd.dev/max-instances", cap.as_deref()),
            (
                "supd.dev/max-instances-reason",
                app.max_instances_reason.as_deref(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?))),
    );
    let rolling = map([
        ("type", "RollingUpdate".into()),
        (
            "rollingUpdate",
            map([("maxSurge", 1.into()), ("maxUnavailable", 0.into())]),
        ),
    ]);
    let (kind, update) = if capped {
        // A StatefulSet's rolling update stops a pod before it starts its
        // successor, one at a time: never two of one identity.
        (
            "StatefulSet",
            ("updateStrategy", map([("type", "RollingUpdate".into())])),
        )
    } else {
        ("Deployment", ("strategy", rolling))
    };
    let pod = map([
        ("metadata", map([("labels", labels())])),
        (
            "spec",
            map([
                (
                    "terminationGracePeriodSeconds",
                    text::seconds(app.kill_timeout, 0).into(),
                ),
                (
                    "containers",
                    seq([container(app, name, process, health, options)]),
                ),
            ]),
        ),
    ]);
    map([
        ("apiVersion", "apps/v1".into()),
        ("kind", kind.into()),
        (
            "metadata",
            map([
                ("name", name.into()),
                ("labels", labels()),
                ("annotations", annotations),
            ]),
        ),
        (
            "spec",
            map([
                ("replicas", app.instances.into()),
                ("serviceName", opt(capped.then_some(name))),
                ("selector", map([("matchLabels", labels())])),
                update,
                ("template", pod),
            ]),
        ),
    ])
}

/// The one container of a pod.
fn container(
    app: &AppConfig,
    name: &str,
    process: &Process,
    health: Option<Handler>,
    options: &Options,
) -> Value {
    let ready = readiness_handler(app, health.clone());
    let startup = ready
        .clone()
        .filter(|_| app.readiness() == Readiness::Notified);
    map([
        ("name", name.into()),
        ("image", options.image.as_str().into()),
        ("command", seq([process.program.as_str().into()])),
        ("args", seq(process.args.iter().map(|a| a.as_str().into()))),
        ("workingDir", process.working_dir.as_str().into()),
        ("env", env(app, process)),
        (
            "ports",
            seq(app
                .port
                .map(|port| map([("containerPort", port.into()), ("protocol", "TCP".into())]))),
        ),
        (
            "resources",
            opt(app.max_memory_restart.map(|bytes| {
                map([(
                    "limits",
                    map([("memory", text::size(bytes, text::KUBERNETES_UNITS).into())]),
                )])
            })),
        ),
        (
            "startupProbe",
            opt(startup.map(|handler| probe(handler, 1, 1, text::seconds(app.listen_timeout, 1)))),
        ),
        (
            "readinessProbe",
            opt(ready.map(|handler| checked(app, handler))),
        ),
        (
            "livenessProbe",
            opt(health.map(|handler| checked(app, handler))),
        ),
    ])
}

/// The environment: the process's, then the instance number under
/// `instance_var` and `NODE_APP_INSTANCE`: a StatefulSet pod's index (0 to
/// replicas - 1, as under supd), a Deployment pod's name (unique, but not
/// a number: Deployments number nothing).
fn env(app: &AppConfig, process: &Process) -> Value {
    let field = if app.max_instances.is_some() {
        "metadata.labels['apps.kubernetes.io/pod-index']"
    } else {
        "metadata.name"
    };
    let from_field = |var: &str| {
        map([
            ("name", var.into()),
            (
                "valueFrom",
                map([("fieldRef", map([("fieldPath", field.into())]))]),
            ),
        ])
    };
    let plain = process
        .env
        .iter()
        .map(|(k, v)| map([("name", k.as_str().into()), ("value", v.as_str().into())]));
    let numbered = vars::instance_names(app).into_iter().map(from_field);
    seq(plain.chain(numbered))
}

/// The `health_check` as a probe handler, when it can probe the pod: a
/// command, or a URL on the app's own machine (a URL on another host is
/// a warning: a probe only reaches its pod).
fn health_probe(app: &AppConfig, warnings: &mut Vec<Warning>) -> Option<Handler> {
    match app.health_probe().ok()?? {
        HealthProbe::Command(command) => Some((
            "exec",
            map([("command", seq(["sh".into(), "-c".into(), command.into()]))]),
        )),
        HealthProbe::Http {
            host, port, path, ..
        } if ["127.0.0.1", "localhost", "::1"].contains(&host.as_str()) => Some((
            "httpGet",
            map([("path", path.into()), ("port", port.into())]),
        )),
        HealthProbe::Http { url, .. } => {
            warnings.push(Warning {
                app: Some(app.name.clone()),
                key: "health_check".into(),
                message: format!(
                    "{url} is not on the app's own machine: a probe only reaches its own pod"
                ),
            });
            None
        }
    }
}

/// When a pod is ready: its health check, else its port accepting, for an
/// app whose readiness supd waits for; `None` when it is ready once started.
fn readiness_handler(app: &AppConfig, health: Option<Handler>) -> Option<Handler> {
    health.or_else(|| {
        let port = app.port.filter(|_| app.readiness().waits())?;
        Some(("tcpSocket", map([("port", port.into())])))
    })
}

/// A probe paced like supd's health checks.
fn checked(app: &AppConfig, handler: Handler) -> Value {
    probe(
        handler,
        text::seconds(app.health_interval, 1),
        text::seconds(app.health_timeout, 1),
        u64::from(app.health_retries),
    )
}

/// `handler` with its period, timeout and failure threshold.
fn probe((kind, body): Handler, period: u64, timeout: u64, failures: u64) -> Value {
    map([
        (kind, body),
        ("periodSeconds", period.into()),
        ("timeoutSeconds", timeout.into()),
        ("failureThreshold", failures.into()),
    ])
}

/// The Service of an app with a port: cluster-internal for an app that
/// listens on loopback (reached from its own machine only under supd), a
/// LoadBalancer for one that listens beyond it.
fn service(app: &AppConfig, name: &str, port: u16) -> Value {
    let kind = if fate::loopback(app) {
        "ClusterIP"
    } else {
        "LoadBalancer"
    };
    map([
        ("apiVersion", "v1".into()),
        ("kind", "Service".into()),
        (
            "metadata",
            map([
                ("name", name.into()),
                ("labels", strings([(NAME_LABEL, name)])),
            ]),
        ),
        (
            "spec",
            map([
                ("type", kind.into()),
                ("selector", strings([(NAME_LABEL, name)])),
                (
                    "ports",
                    seq([map([
                        ("port", port.into()),
                        ("targetPort", port.into()),
                        ("protocol", "TCP".into()),
                    ])]),
                ),
            ]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::{app, documents, get, options};

    /// The documents of one app, and the warnings.
    fn one(app: AppConfig) -> (Vec<Value>, Vec<String>) {
        let export = export(&[app], &options());
        let warnings = export.warnings.iter().map(|w| w.key.clone()).collect();
        (documents(&export.documents[0].text), warnings)
    }

    const CONTAINER: &str = "spec.template.spec.containers.0";

    #[test]
    fn a_capped_app_is_a_stateful_set_numbered_from_zero() {
        let (docs, _) = one(app("billing", |a| {
            a.max_instances = Some(1);
            a.max_instances_reason = Some("payments run once".into());
        }));
        let set = &docs[0];
        assert_eq!(get(set, "kind"), "StatefulSet");
        assert_eq!(get(set, "spec.serviceName"), "billing");
        assert_eq!(get(set, "spec.replicas"), 1);
        assert_eq!(get(set, "spec.updateStrategy.type"), "RollingUpdate");
        let annotations = get(set, "metadata.annotations");
        assert_eq!(annotations["supd.dev/max-instances"], "1");
        assert_eq!(
            annotations["supd.dev/max-instances-reason"],
            "payments run once"
        );
        let id = &get(set, &format!("{CONTAINER}.env"))[1];
        assert_eq!(id["name"], "INSTANCE_ID");
        assert_eq!(
            id["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
    }

    #[test]
    fn a_free_app_is_a_deployment_that_surges_one_pod() {
        let (docs, _) = one(app("api", |a| {
            a.instances = 4;
            a.port = Some(3000);
        }));
        assert_eq!(docs.len(), 2, "a Deployment and a Service");
        let deployment = &docs[0];
        assert_eq!(get(deployment, "kind"), "Deployment");
        assert_eq!(get(deployment, "spec.replicas"), 4);
        assert_eq!(get(deployment, "spec.strategy.rollingUpdate.maxSurge"), 1);
        assert_eq!(
            get(deployment, "spec.strategy.rollingUpdate.maxUnavailable"),
            0
        );
        assert_eq!(get(deployment, "spec.serviceName"), &Value::Null);
        let service = &docs[1];
        assert_eq!(get(service, "kind"), "Service");
        assert_eq!(
            get(service, "spec.type"),
            "LoadBalancer",
            "listens beyond loopback"
        );
        assert_eq!(get(service, "spec.ports.0.targetPort"), 3000);
    }

    #[test]
    fn keys_become_fields() {
        let (docs, warnings) = one(app("api", |a| {
            a.args = vec!["--fast".into()];
            a.port = Some(3000);
            a.host = Some("127.0.0.1".parse().unwrap());
            a.kill_timeout = Duration::from_millis(1600);
            a.max_memory_restart = Some(300 << 20);
            a.env.insert("MODE".into(), "prod".into());
        }));
        let pod = &docs[0]["spec"]["template"]["spec"];
        assert_eq!(pod["terminationGracePeriodSeconds"], 2, "rounded up");
        let container = &pod["containers"][0];
        assert_eq!(container["image"], "img:1");
        assert_eq!(container["command"][0], "/app/bin/app");
        assert_eq!(container["args"][0], "--fast");
        assert_eq!(container["workingDir"], "/app");
        assert_eq!(container["resources"]["limits"]["memory"], "300Mi");
        assert_eq!(container["ports"][0]["containerPort"], 3000);
        assert_eq!(get(&docs[1], "spec.type"), "ClusterIP", "loopback only");
        assert_eq!(
            warnings,
            ["kill_signal"],
            "SIGINT is not Kubernetes' signal"
        );
    }

    /// health_check, wait_ready, then the readiness and liveness handlers
    /// and whether there is a startupProbe.
    type ProbeRow = (
        Option<&'static str>,
        bool,
        Option<&'static str>,
        Option<&'static str>,
        bool,
    );

    #[test]
    fn probes() {
        let table: &[ProbeRow] = &[
            (None, false, None, None, false),
            (None, true, Some("tcpSocket"), None, true),
            (
                Some("http://127.0.0.1:{port}/health"),
                false,
                Some("httpGet"),
                Some("httpGet"),
                false,
            ),
            (
                Some("http://localhost:{port}/health"),
                true,
                Some("httpGet"),
                Some("httpGet"),
                true,
            ),
            (
                Some("test -e /tmp/ok"),
                false,
                Some("exec"),
                Some("exec"),
                false,
            ),
            (Some("http://10.0.0.9:80/"), false, None, None, false),
        ];
        let handler = |probe: &Value| {
            ["tcpSocket", "httpGet", "exec"]
                .into_iter()
                .find(|kind| !probe[kind].is_null())
        };
        for (check, wait_ready, ready, live, startup) in table {
            let (docs, warnings) = one(app("api", |a| {
                a.port = Some(3000);
                a.health_check = check.map(str::to_string);
                a.wait_ready = *wait_ready;
                a.health_interval = Duration::from_secs(5);
                a.listen_timeout = Duration::from_millis(2500);
            }));
            let container = get(&docs[0], CONTAINER);
            assert_eq!(handler(&container["readinessProbe"]), *ready, "{check:?}");
            assert_eq!(handler(&container["livenessProbe"]), *live, "{check:?}");
            assert_eq!(!container["startupProbe"].is_null(), *startup, "{check:?}");
            if *startup {
                assert_eq!(container["startupProbe"]["failureThreshold"], 3);
            }
            if *live == Some("httpGet") {
                assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
                assert_eq!(container["livenessProbe"]["httpGet"]["port"], 3000);
                assert_eq!(container["livenessProbe"]["periodSeconds"], 5);
            }
            let remote = check.is_some_and(|c| c.contains("10.0.0.9"));
            assert_eq!(warnings.contains(&"health_check".to_string()), remote);
        }
    }

    #[test]
    fn local_addresses_of_other_apps_become_service_names() {
        let apps = [
            app("gateway", |a| {
                a.env
                    .insert("USERS".into(), "http://127.0.0.1:30001".into());
            }),
            app("users", |a| a.port = Some(30001)),
        ];
        let export = export(&apps, &options());
        let docs = documents(&export.documents[0].text);
        let env = get(&docs[0], &format!("{CONTAINER}.env.0"));
        assert_eq!(env["value"], "http://users:30001");
    }
}
