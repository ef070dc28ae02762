//! Ecosystem files through `supctl check` and `supctl start`: every error
//! class is refused with `file:line:column` before anything starts.

use crate::support::Supd;

/// `check` fails with exactly one located line naming `key`, and `start`
/// refuses the same file without starting anything.
fn refused(supd: &Supd, name: &str, body: &str, line: usize, key: &str) {
    let path = supd.write(name, body);
    let path = path.to_str().unwrap();
    let err = supd.fails(&["check", path]);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!("{name}:{line}:")),
        "{name}: want line {line}: {err}"
    );
    assert!(first.contains(key), "{name}: message names {key}: {err}");
    let err = supd.fails(&["start", path]);
    assert!(
        err.contains(&format!("{name}:{line}:")),
        "start refuses too: {err}"
    );
}

#[test]
fn every_error_class_is_located() {
    let supd = Supd::new();
    let app = "[[apps]]\nname = \"a\"\nscript = \"sleep\"\n";
    refused(
        &supd,
        "syntax.toml",
        "[[apps]]\nname = \"a\nscript = \"x\"\n",
        2,
        "",
    );
    refused(
        &supd,
        "unknown.toml",
        &format!("{app}instnces = 2\n"),
        4,
        "instnces",
    );
    refused(
        &supd,
        "type.toml",
        &format!("{app}autorestart = \"yes\"\n"),
        4,
        "autorestart",
    );
    refused(
        &supd,
        "port.toml",
        &format!("{app}port = 70000\n"),
        4,
        "port",
    );
    refused(
        &supd,
        "name.toml",
        "[[apps]]\nname = \"a/b\"\nscript = \"sleep\"\n",
        2,
        "name",
    );
    refused(
        &supd,
        "duration.toml",
        &format!("{app}kill_timeout = \"soon\"\n"),
        4,
        "kill_timeout",
    );
    refused(
        &supd,
        "size.toml",
        &format!("{app}max_memory_restart = \"lots\"\n"),
        4,
        "max_memory_restart",
    );
    refused(
        &supd,
        "signal.toml",
        &format!("{app}kill_signal = \"SIGNOPE\"\n"),
        4,
        "kill_signal",
    );
    refused(
        &supd,
        "cron.toml",
        &format!("{app}cron_restart = \"every day\"\n"),
        4,
        "cron_restart",
    );
    refused(
        &supd,
        "cap.toml",
        &format!(
            "{app}exec_mode = \"cluster\"\ninstances = 2\nmax_instances = 1\nmax_instances_reason = \"ports live in memory\"\n"
        ),
        5,
        "ports live in memory",
    );
    // Nothing was started by any of the refused files.
    assert!(supd.list().is_empty());
}

#[test]
fn all_problems_are_reported_in_one_pass() {
    let supd = Supd::new();
    let path = supd.write(
        "many.toml",
        "[[apps]]\nname = \"a\"\nscript = \"sleep\"\nport = 0\nkill_signal = \"NOPE\"\n",
    );
    let err = supd.fails(&["check", path.to_str().unwrap()]);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.contains("many.toml:4:") && err.contains("many.toml:5:"),
        "{err}"
    );
}

#[test]
fn check_accepts_the_spec_example_and_only_env_options() {
    let supd = Supd::new();
    let path = supd.write(
        "ok.toml",
        r#"
[[apps]]
name = "api-gateway"
script = "bin/api"
args = "--verbose --level 2"
exec_mode = "cluster"
instances = "max"
port = 30000
wait_ready = true
listen_timeout = "10s"
kill_signal = "SIGINT"
kill_timeout = 5000
max_memory_restart = "1G"
cron_restart = "0 3 * * *"
exp_backoff_restart_delay = "100ms"
stop_exit_codes = [0]
log_date_format = "%Y-%m-%d %H:%M:%S%.3f"
[apps.env]
NODE_ENV = "development"
[apps.env_production]
NODE_ENV = "production"

[[apps]]
name = "device-service"
script = "sleep"
max_instances = 1
max_instances_reason = "ports are allocated from an in-memory set"
"#,
    );
    let path = path.to_str().unwrap();
    let out = supd.ok(&["check", path]);
    assert!(out.contains("2 app(s)"), "{out}");
    let out = supd.ok(&[
        "check",
        path,
        "--only",
        "device-service",
        "--env",
        "production",
    ]);
    assert!(out.contains("1 app(s): device-service"), "{out}");
    let err = supd.fails(&["check", path, "--only", "nope"]);
    assert!(err.contains("nope"), "{err}");
    let err = supd.fails(&["check", "/no/such/file.toml"]);
    assert!(err.contains("/no/such/file.toml"), "{err}");
    // check never starts a daemon
    assert!(supd.daemon_pid().is_none());
}
