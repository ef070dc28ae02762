//! `supctl export kubernetes|systemd|compose`: the platform's
//! `ecosystem/ecosystem.toml` in each format, accepted by the engines' own
//! checkers (kubernetes-validate in strict mode against Kubernetes 1.30, the
//! Compose specification's JSON schema, `systemd-analyze verify`), keeping
//! what matters: replicas 4/2/1/1/1/1, and the three capped services never
//! run twice. And bad input: an unknown format, a script the image cannot
//! have, a key no engine has.
//!
//! The Python validators are installed by the test itself into a cached
//! venv (see [`validators`]), as the real apps are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::realapps::install;
use crate::support::{Supd, bin, fixture};

/// The services and their replicas, in file order.
const REPLICAS: [(&str, u64); 6] = [
    ("api-gateway", 4),
    ("user-service", 2),
    ("device-service", 1),
    ("app-service", 1),
    ("billing-service", 1),
    ("notification-service", 1),
];

/// The services with `max_instances = 1`, and a word of their reason.
const CAPPED: [(&str, &str); 3] = [
    ("device-service", "in-memory set"),
    ("billing-service", "exactly once"),
    ("notification-service", "one process's memory"),
];

/// The repository's root: the project the image holds.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The platform's file, as it is in the repository.
fn platform() -> String {
    repo()
        .join("ecosystem/ecosystem.toml")
        .display()
        .to_string()
}

/// Runs `supctl export ARGS…`, asserts success; (stdout, the warnings as
/// (app, key) pairs). Every stderr line must be a warning naming both.
fn export(supd: &Supd, args: &[&str]) -> (String, BTreeSet<(String, String)>) {
    let mut all = vec!["export"];
    all.extend(args);
    let out = supd.run(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "export {args:?} failed: {stderr}");
    let warnings = stderr
        .lines()
        .map(|line| {
            let rest = line
                .strip_prefix("warning: app \"")
                .unwrap_or_else(|| panic!("not a warning naming an app: {line}"));
            let (app, rest) = rest.split_once("\": ").expect("app, then key");
            let (key, message) = rest.split_once(": ").expect("key, then message");
            assert!(!message.is_empty(), "{line}");
            (app.to_string(), key.to_string())
        })
        .collect();
    (stdout, warnings)
}

/// `keys` warned for every service of the platform.
fn for_every_service(keys: &[&str]) -> BTreeSet<(String, String)> {
    REPLICAS
        .iter()
        .flat_map(|(app, _)| keys.iter().map(|key| (app.to_string(), key.to_string())))
        .collect()
}

/// The validators' venv, installed once: (its python, the Compose schema).
fn validators() -> (PathBuf, PathBuf) {
    let folder = fixture("export");
    let manifests = ["requirements.txt", "compose-schema.txt"];
    let dir = install::cached("export", &folder, &manifests, |dir| {
        let venv = dir.join("venv");
        let pip = || {
            let mut pip = Command::new(venv.join("bin/pip"));
            pip.args(["--no-input", "--disable-pip-version-check"]);
            pip
        };
        install::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        install::run(pip().args(["install", "-r"]).arg(folder.join(manifests[0])))?;
        install::run(
            pip()
                .args(["download", "--no-deps", "-d"])
                .arg(dir)
                .arg("-r")
                .arg(folder.join(manifests[1])),
        )?;
        install::run(
            Command::new(venv.join("bin/python"))
                .args(["-c", EXTRACT_SCHEMA])
                .arg(dir),
        )
    });
    (dir.join("venv/bin/python"), dir.join("compose_spec.json"))
}

/// Takes `compose_spec.json` out of the docker-compose wheel in argv[1].
const EXTRACT_SCHEMA: &str = "
import glob, sys, zipfile
(wheel,) = glob.glob(sys.argv[1] + '/docker_compose-*.whl')
schema = zipfile.ZipFile(wheel).read('compose/config/compose_spec.json')
open(sys.argv[1] + '/compose_spec.json', 'wb').write(schema)
";

/// Runs `validate.py ARGS…` (see tests/fixtures/export): the documents, as
/// JSON, once valid; panics with the validator's findings otherwise.
fn validate(args: &[&Path]) -> Vec<Value> {
    let (python, _) = validators();
    let out = Command::new(python)
        .arg(fixture("export/validate.py"))
        .args(args)
        .output()
        .expect("run validate.py");
    assert!(
        out.status.success(),
        "invalid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("validate.py prints JSON")
}

#[test]
fn the_platform_as_kubernetes_manifests() {
    let supd = Supd::new();
    let repo = repo().display().to_string();
    let args = [
        "kubernetes",
        &platform(),
        "--project",
        &repo,
        "--image",
        "registry.example.com/platform:1.0",
    ];
    let (stdout, warnings) = export(&supd, &args);
    assert_eq!(
        warnings,
        for_every_service(&["kill_signal", "log_date_format"]),
        "what Kubernetes cannot say, and nothing about the scripts (all in the project)"
    );
    let file = supd.write("platform.yaml", &stdout);
    let docs = validate(&[Path::new("kubernetes"), &file]);

    let workloads: BTreeMap<&str, &Value> = docs
        .iter()
        .filter(|d| d["kind"] != "Service")
        .map(|d| (d["metadata"]["name"].as_str().unwrap(), d))
        .collect();
    for (app, replicas) in REPLICAS {
        let workload = workloads[app];
        assert_eq!(workload["spec"]["replicas"], replicas, "{app}");
        let pod = &workload["spec"]["template"]["spec"];
        assert_eq!(
            pod["terminationGracePeriodSeconds"], 5,
            "{app}: kill_timeout"
        );
        let container = &pod["containers"][0];
        assert_eq!(
            container["command"][0],
            format!("/app/target/release/{app}"),
            "{app}: the script inside the image"
        );
        assert_eq!(container["workingDir"], "/app/ecosystem");
        assert!(
            container["readinessProbe"]["tcpSocket"].is_object(),
            "{app}: wait_ready"
        );
        let capped = CAPPED.iter().find(|(name, _)| *name == app);
        match capped {
            // A StatefulSet runs each pod identity at most once, even
            // during a rollout or when a node is lost; one replica.
            Some((_, reason)) => {
                assert_eq!(workload["kind"], "StatefulSet", "{app}");
                let annotations = &workload["metadata"]["annotations"];
                assert_eq!(annotations["supd.dev/max-instances"], "1");
                let written = annotations["supd.dev/max-instances-reason"]
                    .as_str()
                    .unwrap();
                assert!(written.contains(reason), "{app}: {written}");
            }
            None => {
                assert_eq!(workload["kind"], "Deployment", "{app}");
                let rolling = &workload["spec"]["strategy"]["rollingUpdate"];
                assert_eq!(
                    (&rolling["maxSurge"], &rolling["maxUnavailable"]),
                    (&Value::from(1), &Value::from(0)),
                    "{app}: a new pod before an old one goes, as supd's reload"
                );
            }
        }
    }
    assert_eq!(workloads.len(), 6);

    let services: BTreeMap<&str, &Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .map(|d| (d["metadata"]["name"].as_str().unwrap(), d))
        .collect();
    assert_eq!(services.len(), 6, "one per port");
    for (app, service) in &services {
        let beyond = *app == "api-gateway";
        let kind = if beyond { "LoadBalancer" } else { "ClusterIP" };
        assert_eq!(
            service["spec"]["type"], kind,
            "{app}: only the gateway is public"
        );
    }
    let gateway_env = &workloads["api-gateway"]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        gateway_env.as_array().unwrap().contains(
            &serde_json::json!({"name": "USER_SERVICE_URL", "value": "http://user-service:30001"})
        ),
        "the gateway reaches user-service by its Service: {gateway_env}"
    );

    // -o DIR: one file per app, the same documents.
    let dir = supd.work().join("manifests");
    let mut with_dir = args.to_vec();
    with_dir.extend(["-o", dir.to_str().unwrap()]);
    export(&supd, &with_dir);
    let files: String = REPLICAS
        .iter()
        .map(|(app, _)| {
            let text = std::fs::read_to_string(dir.join(format!("{app}.yaml"))).unwrap();
            format!("---\n{text}")
        })
        .collect();
    assert_eq!(files, stdout);
}

#[test]
fn the_platform_as_a_compose_file() {
    let supd = Supd::new();
    let repo = repo().display().to_string();
    let (stdout, warnings) = export(&supd, &["compose", &platform(), "--project", &repo]);
    let mut expected = for_every_service(&["wait_ready", "log_date_format"]);
    for (app, key) in [
        ("api-gateway", "instances"),
        ("api-gateway", "instance_var"),
        ("user-service", "instance_var"),
    ] {
        expected.insert((app.into(), key.into()));
    }
    assert_eq!(warnings, expected);
    let file = supd.write("compose.yaml", &stdout);
    let (_, schema) = validators();
    let docs = validate(&[Path::new("compose"), &schema, &file]);
    let services = &docs[0]["services"];
    for (app, replicas) in REPLICAS {
        let service = &services[app];
        let deploy = &service["deploy"];
        assert_eq!(deploy["replicas"], replicas, "{app}");
        assert_eq!(service["stop_grace_period"], "5s", "{app}");
        assert_eq!(service["stop_signal"], "SIGINT", "{app}");
        let capped = CAPPED.iter().any(|(name, _)| *name == app);
        // stop-first: the old container is gone before its successor
        // starts, so a capped service never runs twice during an update.
        let order = if capped { "stop-first" } else { "start-first" };
        assert_eq!(deploy["update_config"]["order"], order, "{app}");
        assert_eq!(deploy["update_config"]["parallelism"], 1, "{app}");
        let public = app == "api-gateway";
        assert_eq!(service["ports"].is_array(), public, "{app}");
        assert_eq!(service["expose"].is_array(), !public, "{app}");
    }
    assert_eq!(services.as_object().unwrap().len(), 6);
}

#[test]
fn the_platform_as_systemd_units() {
    let supd = Supd::new();
    // The units run the programs of this build: `systemd-analyze verify`
    // wants every ExecStart= to be an executable that exists.
    let text = std::fs::read_to_string(platform()).unwrap();
    let programs = bin("api-gateway").parent().unwrap().display().to_string();
    let file = supd.write(
        "ecosystem.toml",
        &text.replace("../target/release/", &format!("{programs}/")),
    );
    let dir = supd.work().join("units");
    let (stdout, warnings) = export(
        &supd,
        &[
            "systemd",
            file.to_str().unwrap(),
            "-o",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(warnings, for_every_service(&["log_date_format"]));
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        stdout.lines().count(),
        files.len(),
        "one line per file written"
    );
    let unit = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let has = |name: &str, line: &str| {
        assert!(
            unit(name).lines().any(|l| l == line),
            "{line} in {name}:\n{}",
            unit(name)
        );
    };
    for (app, replicas) in REPLICAS {
        if replicas > 1 {
            let wanted: Vec<String> = (0..replicas)
                .map(|i| format!("{app}@{i}.service"))
                .collect();
            has(
                &format!("{app}.target"),
                &format!("Wants={}", wanted.join(" ")),
            );
            has(&format!("{app}@.service"), "Environment=\"INSTANCE_ID=%i\"");
            assert!(!files.contains(&format!("{app}.service")));
        } else {
            // One plain unit: systemd never runs a unit twice, a restart
            // stops it before it starts it again.
            has(&format!("{app}.service"), "Environment=\"INSTANCE_ID=0\"");
            assert!(!files.contains(&format!("{app}@.service")), "{app}");
        }
        let service = if replicas > 1 {
            format!("{app}@.service")
        } else {
            format!("{app}.service")
        };
        for line in [
            "Type=notify",
            "TimeoutStopSec=5s",
            "KillSignal=SIGINT",
            "Restart=always",
            &format!("Sockets={app}.socket"),
        ] {
            has(&service, line);
        }
        let socket = format!("{app}.socket");
        has(&socket, "ReusePort=yes");
        has(&socket, &format!("FileDescriptorName={app}"));
    }
    has("api-gateway.socket", "ListenStream=30000");
    has("billing-service.socket", "ListenStream=127.0.0.1:30005");
    assert_eq!(
        files.len(),
        6 + 6 + 2,
        "services, sockets, targets: {files:?}"
    );

    // The real checker: every unit loads, every key is known (an unknown
    // one is only a message on stderr, so stderr must be empty).
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "verify: {stderr}"
    );
}

#[test]
fn unknown_formats_outside_scripts_and_keys_no_engine_has() {
    let supd = Supd::new();
    let file = supd.write(
        "ecosystem.toml",
        r#"
[[apps]]
name = "local"
script = "bin/local"
[apps.env]
MODE = "development"
[apps.env_production]
MODE = "production"

[[apps]]
name = "worker"
script = "/opt/tools/worker"
cron_restart = "0 3 * * *"
"#,
    );
    let file = file.to_str().unwrap();

    let err = supd.fails(&["export", "helm", file]);
    let first = err.lines().next().unwrap();
    assert!(first.contains("'helm'"), "{err}");
    for format in ["kubernetes", "systemd", "compose"] {
        assert!(err.contains(format), "lists {format}: {err}");
    }

    for format in ["kubernetes", "compose"] {
        let (_, warnings) = export(&supd, &[format, file]);
        let expected: BTreeSet<(String, String)> =
            [("worker", "script"), ("worker", "cron_restart")]
                .into_iter()
                .map(|(a, k)| (a.to_string(), k.to_string()))
                .collect();
        let named: BTreeSet<_> = warnings
            .iter()
            .filter(|(_, key)| key != "kill_signal")
            .cloned()
            .collect();
        assert_eq!(
            named, expected,
            "{format}: the script of the project is fine"
        );
    }
    // Units run on the host, where the script is.
    let (_, warnings) = export(&supd, &["systemd", file]);
    let keys: Vec<&str> = warnings.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys, ["cron_restart"]);

    // --env and --only select as for start.
    let (yaml, _) = export(
        &supd,
        &["compose", file, "--env", "production", "--only", "local"],
    );
    assert!(yaml.contains("MODE: production"), "{yaml}");
    assert!(!yaml.contains("worker"), "{yaml}");
    let (yaml, _) = export(&supd, &["kubernetes", file]);
    assert!(yaml.contains("value: development"), "{yaml}");

    let err = supd.fails(&["export", "compose", file, "--only", "nosuch"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nosuch"), "{err}");
}

/// The values of `KEY=` lines in a unit, in order (quotes of a whole
/// value removed).
fn directive(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim_matches('"').to_string())
        .collect()
}

#[test]
fn an_exported_socket_and_service_run_under_systemds_socket_passing() {
    // The units, run by systemd's own socket-activation tool: it binds what
    // the socket unit says, waits for a client, then execs what the service
    // says with the socket as fd 3 and LISTEN_FDS, as systemd (and supd)
    // pass it. The service answers only if it took that socket: binding the
    // port itself would fail, the tool holds it.
    let supd = Supd::new();
    let port = crate::support::free_port();
    let file = supd.write(
        "ecosystem.toml",
        &format!(
            r#"
[[apps]]
name = "user-service"
script = "{}"
port = {port}
host = "127.0.0.1"
wait_ready = true
[apps.env]
JWT_SECRET = "test-only"
"#,
            bin("user-service").display()
        ),
    );
    let dir = supd.work().join("units");
    export(
        &supd,
        &[
            "systemd",
            file.to_str().unwrap(),
            "-o",
            dir.to_str().unwrap(),
        ],
    );
    let socket = std::fs::read_to_string(dir.join("user-service.socket")).unwrap();
    let service = std::fs::read_to_string(dir.join("user-service.service")).unwrap();
    let [listen] = &directive(&socket, "ListenStream")[..] else {
        panic!("one ListenStream= in {socket}")
    };
    assert_eq!(listen, &format!("127.0.0.1:{port}"));
    let names = directive(&socket, "FileDescriptorName");
    let exec = directive(&service, "ExecStart");
    let out = supd.work().join("service.out");
    let mut activate = Command::new("systemd-socket-activate");
    activate
        .arg(format!("--listen={listen}"))
        .arg(format!("--fdname={}", names[0]))
        .args(
            directive(&service, "Environment")
                .iter()
                .map(|e| format!("--setenv={e}")),
        )
        .args(exec[0].split(' '))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null());
    let child = crate::support::KillOnDrop(activate.spawn().expect("systemd-socket-activate"));
    let (status, body) = crate::support::wait_for(
        std::time::Duration::from_secs(10),
        "the socket-activated service to answer",
        || crate::support::get_fresh(port, "/health").ok(),
    );
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health["instance"], "instance-0",
        "INSTANCE_ID from Environment="
    );
    assert_eq!(
        health["pid"],
        child.0.id(),
        "the tool execs the service in place"
    );
    let said = std::fs::read_to_string(&out).unwrap();
    assert!(
        said.contains("socket from the supervisor on fd 3"),
        "{said}"
    );
}
