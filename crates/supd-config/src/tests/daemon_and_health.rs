//! `[daemon]`, health checks, the watchdog and the per-app log keys: valid
//! forms, defaults, every error class at its line and column, the wire form.

use std::net::SocketAddr;
use std::time::Duration;

use super::{APP, File, app, ok, problems};
use crate::{AppConfig, DaemonConfig, Ecosystem, HealthProbe, LoadOptions};

/// `APP` and a `[daemon]` table with `lines`.
fn daemon(lines: &str) -> String {
    format!("{APP}[daemon]\n{lines}\n")
}

#[test]
fn a_full_example_loads() {
    let eco = ok(r#"
[daemon]
sample_interval = "500ms"
metrics = "127.0.0.1:9615"
log_max_size = "10M"
log_retain = 7
log_compress = true
log_rotate_interval = "0 0 * * *"

[[apps]]
name = "api"
script = "x"
port = 30000
health_check = "http://127.0.0.1:{port}/health"
health_interval = "5s"
health_timeout = 500
health_retries = 5
watchdog = "30s"
log_max_size = "1G"
log_retain = 3
log_compress = false
log_rotate_interval = "@hourly"
merge_logs = false

[[apps]]
name = "worker"
script = "y"
health_check = "test -f /tmp/worker.ok"
"#);
    assert_eq!(
        eco.daemon,
        DaemonConfig {
            sample_interval: Duration::from_millis(500),
            metrics: Some(SocketAddr::from(([127, 0, 0, 1], 9615))),
            log_max_size: Some(10 << 20),
            log_retain: 7,
            log_compress: true,
            log_rotate_interval: Some("0 0 * * *".into()),
            written: [
                "sample_interval",
                "metrics",
                "log_max_size",
                "log_retain",
                "log_compress",
                "log_rotate_interval",
            ]
            .map(String::from)
            .into(),
        }
    );
    assert_eq!(eco.daemon.validate(), Ok(()));
    let [api, worker] = eco.apps.as_slice() else {
        panic!("two apps")
    };
    assert_eq!(
        api.health_check.as_deref(),
        Some("http://127.0.0.1:{port}/health")
    );
    assert_eq!(
        api.health_probe(),
        Ok(Some(HealthProbe::Http {
            url: "http://127.0.0.1:30000/health".into(),
            host: "127.0.0.1".into(),
            port: 30000,
            path: "/health".into(),
        }))
    );
    assert_eq!(api.health_interval, Duration::from_secs(5));
    assert_eq!(api.health_timeout, Duration::from_millis(500));
    assert_eq!(api.health_retries, 5);
    assert_eq!(api.watchdog, Some(Duration::from_secs(30)));
    assert_eq!(api.log_max_size, Some(1 << 30));
    assert_eq!(api.log_retain, Some(3));
    assert_eq!(api.log_compress, Some(false));
    assert_eq!(api.log_rotate_interval.as_deref(), Some("@hourly"));
    assert!(!api.merge_logs);
    assert_eq!(api.validate(), Ok(()));
    assert_eq!(
        worker.health_probe(),
        Ok(Some(HealthProbe::Command("test -f /tmp/worker.ok".into())))
    );
    assert_eq!(worker.validate(), Ok(()));
}

#[test]
fn daemon_after_the_apps_and_inline() {
    let eco = ok(&daemon("sample_interval = 250"));
    assert_eq!(eco.daemon.sample_interval, Duration::from_millis(250));
    // Only what was written counts as written (a default does not override a flag).
    assert!(eco.daemon.is_written("sample_interval"));
    assert!(!eco.daemon.is_written("metrics"));
    let eco = ok(&format!("daemon = {{ metrics = \"[::1]:9615\" }}\n{APP}"));
    assert_eq!(eco.daemon.metrics.map(|a| a.port()), Some(9615));
    assert!(eco.daemon.metrics.is_some_and(|a| a.ip().is_loopback()));
    // Not loopback: allowed (documented as exposing the endpoint).
    let eco = ok(&daemon("metrics = \"0.0.0.0:9615\""));
    assert!(eco.daemon.metrics.is_some_and(|a| a.ip().is_unspecified()));
    // The bounds themselves are allowed.
    for (value, want) in [("\"100ms\"", 100), ("\"1h\"", 3_600_000)] {
        let eco = ok(&daemon(&format!("sample_interval = {value}")));
        assert_eq!(eco.daemon.sample_interval, Duration::from_millis(want));
    }
    let eco = ok(&daemon("log_max_size = \"1K\""));
    assert_eq!(eco.daemon.log_max_size, Some(1024));
    // --only keeps the daemon table.
    let file = File::new(&daemon("log_retain = 2"));
    let opts = LoadOptions {
        env: None,
        only: Some(vec!["a".into()]),
    };
    assert_eq!(file.load(&opts).expect("valid").daemon.log_retain, 2);
}

#[test]
fn defaults() {
    let eco = ok(APP);
    let d = &eco.daemon;
    assert_eq!(*d, DaemonConfig::default());
    assert_eq!(d.sample_interval, Duration::from_secs(1));
    assert_eq!(d.metrics, None);
    assert_eq!(d.log_max_size, None);
    assert_eq!(d.log_retain, 30);
    assert!(!d.log_compress);
    assert_eq!(d.log_rotate_interval, None);
    assert_eq!(d.validate(), Ok(()));
    assert!(d.written.is_empty());
    // An empty [daemon] is all defaults too.
    assert_eq!(ok(&daemon("")).daemon, DaemonConfig::default());

    let a = &eco.apps[0];
    assert_eq!(a.health_check, None);
    assert_eq!(a.health_probe(), Ok(None));
    assert_eq!(a.health_interval, Duration::from_secs(10));
    assert_eq!(a.health_timeout, Duration::from_secs(2));
    assert_eq!(a.health_retries, 3);
    assert_eq!(a.watchdog, None);
    assert_eq!(a.log_max_size, None);
    assert_eq!(a.log_retain, None);
    assert_eq!(a.log_compress, None);
    assert_eq!(a.log_rotate_interval, None);
    assert!(a.merge_logs);
    // A check alone takes the default tuning.
    let eco = ok(&app("health_check = \"true\""));
    assert_eq!(eco.apps[0].health_interval, Duration::from_secs(10));
    assert_eq!(eco.apps[0].health_retries, 3);
}

#[test]
fn health_check_forms() {
    let probe = |extra: &str| ok(&app(extra)).apps[0].health_probe().expect("valid");
    assert_eq!(
        probe("port = 8080\nhealth_check = \"curl -fsS localhost:$PORT/health\""),
        Some(HealthProbe::Command(
            "curl -fsS localhost:$PORT/health".into()
        ))
    );
    assert_eq!(
        probe("health_check = \"http://localhost:9000\""),
        Some(HealthProbe::Http {
            url: "http://localhost:9000".into(),
            host: "localhost".into(),
            port: 9000,
            path: "/".into(),
        })
    );
    // {port} needs `port`, written before or after the check.
    assert!(
        probe("health_check = \"http://[::1]:{port}/ready?deep=1\"\nport = 3000").is_some_and(
            |p| p
                == HealthProbe::Http {
                    url: "http://[::1]:3000/ready?deep=1".into(),
                    host: "::1".into(),
                    port: 3000,
                    path: "/ready?deep=1".into(),
                }
        )
    );
}

#[test]
fn each_error_class_is_located_and_names_the_key() {
    // (file text, "line:column", text the message must contain)
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str)] = &[
        // [daemon]: the table itself
        (&format!("daemon = 3\n{APP}"), "1:10", "daemon: expected a table ([daemon]), found an integer"),
        (&format!("{APP}[[daemon]]\nlog_retain = 1\n"), "4:1", "daemon: expected one [daemon] table, found an array"),
        (&format!("{APP}[daemon]\n[daemon]\n"), "5:2", "invalid TOML: duplicate key \"daemon\""),
        (&format!("{APP}[daemon]\nsample_intervall = 5\n"), "5:1", "daemon: unknown key \"sample_intervall\" (did you mean \"sample_interval\"?)"),
        (&format!("{APP}[daemon]\nkill_timeout = 5\n"), "5:1", "daemon: unknown key \"kill_timeout\" (it belongs in an [[apps]] table)"),
        (&format!("deamon = {{}}\n{APP}"), "1:1", "unknown top-level key \"deamon\" (did you mean \"daemon\"?)"),
        (&format!("sample_interval = \"1s\"\n{APP}"), "1:1", "unknown top-level key \"sample_interval\" (it belongs in the [daemon] table)"),
        // [daemon]: its keys
        (&daemon("sample_interval = \"50ms\""), "5:19", "daemon.sample_interval: 50ms is too short; the minimum is 100ms"),
        (&daemon("sample_interval = \"2h\""), "5:19", "daemon.sample_interval: 2h is too long; the maximum is 1h"),
        (&daemon("sample_interval = 0"), "5:19", "daemon.sample_interval: 0ms is too short"),
        (&daemon("sample_interval = true"), "5:19", "daemon.sample_interval: expected a duration"),
        (&daemon("sample_interval = \"1 fortnight\""), "5:19", "daemon.sample_interval: \"1 fortnight\" has an unknown unit"),
        (&daemon("metrics = \"localhost:9615\""), "5:11", "daemon.metrics: \"localhost:9615\" is not an address; write IP:PORT"),
        (&daemon("metrics = \"127.0.0.1\""), "5:11", "daemon.metrics: \"127.0.0.1\" is not an address"),
        (&daemon("metrics = \"127.0.0.1:0\""), "5:11", "daemon.metrics: \"127.0.0.1:0\": port 0 is not allowed"),
        (&daemon("metrics = 9615"), "5:11", "daemon.metrics: expected a string, found an integer"),
        (&daemon("log_max_size = 512"), "5:16", "daemon.log_max_size: 512 bytes is too small; the minimum is 1K"),
        (&daemon("log_max_size = \"1T\""), "5:16", "daemon.log_max_size: \"1T\" has an unknown unit"),
        (&daemon("log_max_size = -1"), "5:16", "daemon.log_max_size: -1 is not a size"),
        (&daemon("log_retain = 0"), "5:14", "daemon.log_retain: 0 is not allowed; expected a positive integer"),
        (&daemon("log_retain = \"30\""), "5:14", "daemon.log_retain: expected a positive integer, found a string"),
        (&daemon("log_compress = \"yes\""), "5:16", "daemon.log_compress: expected a boolean"),
        (&daemon("log_rotate_interval = \"0 0 * *\""), "5:23", "daemon.log_rotate_interval: \"0 0 * *\" is not a valid cron expression (5 fields, or 6 with seconds)"),
        (&daemon("log_rotate_interval = 1"), "5:23", "daemon.log_rotate_interval: expected a string"),
        // apps: health checks
        (&app("health_check = \"https://127.0.0.1/health\""), "4:16", "apps[0].health_check: \"https://127.0.0.1/health\": only http:// health checks"),
        (&app("health_check = \"ftp://x/\""), "4:16", "apps[0].health_check: \"ftp://x/\": ftp:// is not supported"),
        (&app("health_check = \"http://localhost:{port}/health\""), "4:16",
            "apps[0].health_check: \"http://localhost:{port}/health\" uses {port} but the app has no port"),
        (&app("port = 80\nhealth_check = \"curl localhost:{port}\""), "5:16",
            "apps[0].health_check: \"curl localhost:{port}\": {port} is replaced only in http:// URLs; a command finds the port in $PORT"),
        (&app("health_check = \"HTTP://localhost/\""), "4:16", "apps[0].health_check: \"HTTP://localhost/\": write the scheme in lower case"),
        (&app("health_check = \"\""), "4:16", "apps[0].health_check: must not be empty"),
        (&app("health_check = true"), "4:16", "apps[0].health_check: expected a string, found a boolean"),
        (&app("health_check = \"http://:80/\""), "4:16", "apps[0].health_check: \"http://:80/\" is not a valid http:// URL: it has no host"),
        (&app("health_check = \"http://x:0/\""), "4:16", "apps[0].health_check: \"http://x:0/\" is not a valid http:// URL: \"0\" is not a port"),
        (&app("health_check = \"true\"\nhealth_interval = \"50ms\""), "5:19", "apps[0].health_interval: 50ms is too short; the minimum is 100ms"),
        (&app("health_check = \"true\"\nhealth_interval = \"often\""), "5:19", "apps[0].health_interval: \"often\" is not a duration"),
        (&app("health_check = \"true\"\nhealth_timeout = 5"), "5:18", "apps[0].health_timeout: 5ms is too short; the minimum is 10ms"),
        (&app("health_check = \"true\"\nhealth_retries = 0"), "5:18", "apps[0].health_retries: 0 is not allowed; expected a positive integer"),
        (&app("health_check = \"true\"\nhealth_retries = 1.5"), "5:18", "apps[0].health_retries: expected a positive integer, found a float"),
        (&app("health_interval = \"5s\""), "4:19", "apps[0].health_interval: has no effect without health_check"),
        (&app("health_timeout = \"1s\""), "4:18", "apps[0].health_timeout: has no effect without health_check"),
        (&app("health_retries = 2"), "4:18", "apps[0].health_retries: has no effect without health_check"),
        // apps: watchdog
        (&app("watchdog = \"50ms\""), "4:12", "apps[0].watchdog: 50ms is too short; the minimum is 100ms"),
        (&app("watchdog = 0"), "4:12", "apps[0].watchdog: 0ms is too short"),
        (&app("watchdog = false"), "4:12", "apps[0].watchdog: expected a duration"),
        // apps: log keys
        (&app("log_max_size = \"1000\""), "4:16", "apps[0].log_max_size: 1000 bytes is too small; the minimum is 1K"),
        (&app("log_max_size = [1]"), "4:16", "apps[0].log_max_size: expected a size"),
        (&app("log_retain = 0"), "4:14", "apps[0].log_retain: 0 is not allowed"),
        (&app("log_compress = 1"), "4:16", "apps[0].log_compress: expected a boolean"),
        (&app("log_rotate_interval = \"every night\""), "4:23", "apps[0].log_rotate_interval: \"every night\" is not a valid cron expression (5 fields, or 6 with seconds)"),
        (&app("merge_logs = \"no\""), "4:14", "apps[0].merge_logs: expected a boolean"),
        // apps: keys of [daemon], and typos
        (&app("sample_interval = \"1s\""), "4:1", "apps[0]: unknown key \"sample_interval\" (it belongs in [daemon])"),
        (&app("metrics = \"127.0.0.1:9615\""), "4:1", "apps[0]: unknown key \"metrics\" (it belongs in [daemon])"),
        (&app("healthcheck = \"true\""), "4:1", "apps[0]: unknown key \"healthcheck\" (did you mean \"health_check\"?)"),
        (&app("merge_log = true"), "4:1", "(did you mean \"merge_logs\"?)"),
    ];
    for (text, place, needle) in cases {
        let found = problems(text);
        assert_eq!(found.len(), 1, "{text}\n{found:#?}");
        let (at, message) = found[0].split_once(": ").expect("line:column: message");
        assert_eq!(at, *place, "{text}\n{}", found[0]);
        assert!(
            message.contains(needle),
            "{text}\nwant {needle:?}\nfound {message:?}"
        );
    }
}

#[test]
fn problems_that_depend_on_another_key_are_not_repeated() {
    // An invalid port is reported once; {port} is not reported on top.
    let found = problems(&app(
        "port = 0\nhealth_check = \"http://localhost:{port}/\"",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("4:8: apps[0].port"), "{found:#?}");
    // An invalid check is reported once; its tuning is not "without health_check".
    let found = problems(&app(
        "health_check = \"https://x\"\nhealth_interval = \"1s\"",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("4:16: apps[0].health_check"),
        "{found:#?}"
    );
}

#[test]
fn every_problem_in_one_pass_daemon_included() {
    let text = "\
[daemon]
sample_interval = \"1ms\"
metrics = \"nowhere\"

[[apps]]
name = \"a\"
script = \"x\"
health_check = \"https://a\"
watchdog = \"1ms\"
";
    let found = problems(text);
    let places: Vec<&str> = found
        .iter()
        .map(|p| p.split_once(": ").expect("place").0)
        .collect();
    assert_eq!(places, ["2:19", "3:11", "8:16", "9:12"], "{found:#?}");
}

#[test]
fn unknown_top_level_keys_still_list_what_is_allowed() {
    let found = problems(&format!("version = 2\n{APP}"));
    assert_eq!(
        found,
        [
            "1:1: unknown top-level key \"version\" (only [[apps]] tables and one [daemon] table are allowed)"
        ]
    );
}

/// An edit that makes a valid app invalid.
type Change = fn(&mut AppConfig);

#[test]
fn validate_checks_the_new_keys_of_ad_hoc_apps() {
    let base = AppConfig::with_defaults("web".into(), "node".into(), "/srv".into());
    assert_eq!(base.validate(), Ok(()));
    let mut good = base.clone();
    good.port = Some(8080);
    good.health_check = Some("http://127.0.0.1:{port}/health".into());
    good.watchdog = Some(Duration::from_millis(100));
    good.log_max_size = Some(1024);
    good.log_retain = Some(1);
    good.log_rotate_interval = Some("0 * * * *".into());
    assert_eq!(good.validate(), Ok(()));

    let cases: &[(Change, &str)] = &[
        (
            |a| a.health_check = Some("http://localhost:{port}/".into()),
            "health_check: \"http://localhost:{port}/\" uses {port} but the app has no port",
        ),
        (
            |a| a.health_check = Some("https://x/".into()),
            "health_check: \"https://x/\": only http://",
        ),
        (
            |a| a.health_check = Some(" ".into()),
            "health_check: must not be empty",
        ),
        (
            |a| a.health_interval = Duration::from_millis(99),
            "health_interval: 99ms is too short",
        ),
        (
            |a| a.health_timeout = Duration::from_millis(9),
            "health_timeout: 9ms is too short",
        ),
        (
            |a| a.health_retries = 0,
            "health_retries: must be at least 1",
        ),
        (
            |a| a.watchdog = Some(Duration::ZERO),
            "watchdog: 0ms is too short",
        ),
        (
            |a| a.log_max_size = Some(1023),
            "log_max_size: 1023 bytes is too small",
        ),
        (|a| a.log_retain = Some(0), "log_retain: must be at least 1"),
        (
            |a| a.log_rotate_interval = Some("hourly".into()),
            "log_rotate_interval:",
        ),
    ];
    for (change, want) in cases {
        let mut app = base.clone();
        change(&mut app);
        let err = app.validate().expect_err(want);
        assert!(err.starts_with(want), "want {want:?}, found {err:?}");
    }
    // health_probe reports what validate refuses.
    let mut app = base.clone();
    app.health_check = Some("http://x:{port}".into());
    assert!(app.health_probe().is_err());
}

/// An edit that makes a valid daemon table invalid.
type DaemonChange = fn(&mut DaemonConfig);

#[test]
fn daemon_validate() {
    assert_eq!(DaemonConfig::default().validate(), Ok(()));
    let cases: &[(DaemonChange, &str)] = &[
        (
            |d| d.sample_interval = Duration::from_millis(99),
            "sample_interval: 99ms is too short; the minimum is 100ms",
        ),
        (
            |d| d.sample_interval = Duration::from_secs(3601),
            "sample_interval: 3601s is too long; the maximum is 1h",
        ),
        (
            |d| d.metrics = Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            "metrics: port 0",
        ),
        (|d| d.log_max_size = Some(10), "log_max_size: 10 bytes"),
        (|d| d.log_retain = 0, "log_retain: must be at least 1"),
        (
            |d| d.log_rotate_interval = Some("* * *".into()),
            "log_rotate_interval:",
        ),
    ];
    for (change, want) in cases {
        let mut d = DaemonConfig::default();
        change(&mut d);
        let err = d.validate().expect_err(want);
        assert!(err.starts_with(want), "want {want:?}, found {err:?}");
    }
}

#[test]
fn older_wire_forms_still_deserialize() {
    // An AppConfig serialized before the new keys existed. TOML has no
    // null, so the older optional keys are set (JSON writes them as null).
    let mut full = AppConfig::with_defaults("web".into(), "node".into(), "/srv".into());
    full.port = Some(80);
    full.exp_backoff_restart_delay = Some(Duration::from_millis(100));
    full.max_memory_restart = Some(1 << 30);
    full.cron_restart = Some("0 3 * * *".into());
    full.max_instances = Some(2);
    full.max_instances_reason = Some("why".into());
    full.log_date_format = Some("%H".into());
    let text = toml::to_string(&full).expect("serialize");
    let new_keys = [
        "health_interval",
        "health_timeout",
        "health_retries",
        "merge_logs",
    ];
    for key in new_keys {
        assert!(text.contains(&format!("{key} = ")), "{key} in\n{text}");
    }
    let old: String = text
        .lines()
        .filter(|line| !new_keys.iter().any(|k| line.starts_with(&format!("{k} ="))))
        .map(|line| format!("{line}\n"))
        .collect();
    let back: AppConfig = toml::from_str(&old).expect("old form");
    assert_eq!(back, full);

    // Round trip with every new key set.
    let mut set = full.clone();
    set.health_check = Some("http://localhost:{port}/".into());
    set.health_interval = Duration::from_millis(1500);
    set.watchdog = Some(Duration::from_secs(5));
    set.log_max_size = Some(1 << 20);
    set.log_retain = Some(4);
    set.log_compress = Some(true);
    set.log_rotate_interval = Some("@daily".into());
    set.merge_logs = false;
    let text = toml::to_string(&set).expect("serialize");
    assert_eq!(toml::from_str::<AppConfig>(&text).expect("round trip"), set);

    // An Ecosystem without `daemon`, and a DaemonConfig with only some keys.
    let eco: Ecosystem = toml::from_str("path = \"/e.toml\"\napps = []\n").expect("old form");
    assert_eq!(eco.daemon, DaemonConfig::default());
    let d: DaemonConfig = toml::from_str("metrics = \"127.0.0.1:9615\"\n").expect("partial");
    assert_eq!(d.metrics, Some(SocketAddr::from(([127, 0, 0, 1], 9615))));
    assert_eq!(d.sample_interval, Duration::from_secs(1));
    assert_eq!(d.log_retain, 30);
    let d = DaemonConfig {
        sample_interval: Duration::from_millis(200),
        metrics: Some(SocketAddr::from(([0, 0, 0, 0], 9615))),
        log_max_size: Some(4096),
        log_retain: 2,
        log_compress: true,
        log_rotate_interval: Some("0 0 * * *".into()),
        written: ["metrics".to_owned()].into(),
    };
    let text = toml::to_string(&d).expect("serialize");
    assert!(text.contains("sample_interval = 200"), "{text}");
    assert_eq!(
        toml::from_str::<DaemonConfig>(&text).expect("round trip"),
        d
    );
}
