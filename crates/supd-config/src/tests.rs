//! Loading whole files: every unit form, every error class at its exact
//! line and column, `--env`, `--only` and path resolution.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{AppConfig, ConfigError, Ecosystem, ExecMode, LoadOptions, load};

/// The first three lines of most test files: a valid app.
const APP: &str = "[[apps]]\nname = \"a\"\nscript = \"x\"\n";

/// An ecosystem file in a fresh temporary folder.
struct File {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl File {
    fn new(text: &str) -> File {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ecosystem.toml");
        std::fs::write(&path, text).expect("write");
        File { dir, path }
    }

    /// The file's folder as `load` sees it (canonical).
    fn folder(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("canonical")
    }

    fn load(&self, opts: &LoadOptions) -> Result<Ecosystem, ConfigError> {
        load(&self.path, opts)
    }
}

/// Loads `text`, expecting success.
fn ok(text: &str) -> Ecosystem {
    File::new(text)
        .load(&LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

/// Loads `text`, expecting failure: each problem as `line:column: message`.
fn problems(text: &str) -> Vec<String> {
    let file = File::new(text);
    let err = file.load(&LoadOptions::default()).expect_err(text);
    err.problems
        .iter()
        .map(|p| {
            assert_eq!(p.file, file.path);
            format!("{}:{}: {}", p.line, p.column, p.message)
        })
        .collect()
}

/// One app: `APP` plus `extra` lines.
fn app(extra: &str) -> String {
    format!("{APP}{extra}\n")
}

#[test]
fn the_spec_example_loads() {
    let eco = ok(r#"
[[apps]]
name = "api-gateway"
script = "target/release/api-gateway"
args = ["--verbose"]
cwd = "."
exec_mode = "cluster"
instances = 4
port = 30000
host = "127.0.0.1"
wait_ready = true
listen_timeout = "10s"
kill_signal = "SIGINT"
kill_timeout = "5s"
autorestart = true
max_restarts = 10
min_uptime = "10s"
restart_delay = "4s"
exp_backoff_restart_delay = "100ms"
stop_exit_codes = [0]
max_memory_restart = "1G"
cron_restart = "0 3 * * *"
instance_var = "INSTANCE_ID"
max_instances = 4
max_instances_reason = "ports are allocated from an in-memory set"
log_date_format = "%Y-%m-%d %H:%M:%S%.3f"

[apps.env]
NODE_ENV = "development"
[apps.env_production]
NODE_ENV = "production"
"#);
    let dir = eco.path.parent().expect("folder").to_path_buf();
    let [a] = eco.apps.as_slice() else {
        panic!("one app")
    };
    assert_eq!(a.name, "api-gateway");
    assert_eq!(
        a.script,
        dir.join("target/release/api-gateway")
            .to_str()
            .expect("utf-8")
    );
    assert_eq!(a.args, ["--verbose"]);
    assert_eq!(a.cwd, dir);
    assert_eq!(a.exec_mode, ExecMode::Cluster);
    assert_eq!(a.instances, 4);
    assert_eq!(a.port, Some(30000));
    assert_eq!(a.host, Some(std::net::Ipv4Addr::LOCALHOST.into()));
    assert!(a.wait_ready);
    assert_eq!(a.listen_timeout, Duration::from_secs(10));
    assert_eq!(a.kill_signal, "SIGINT");
    assert_eq!(a.kill_timeout, Duration::from_secs(5));
    assert!(a.autorestart);
    assert_eq!(a.max_restarts, 10);
    assert_eq!(a.min_uptime, Duration::from_secs(10));
    assert_eq!(a.restart_delay, Duration::from_secs(4));
    assert_eq!(
        a.exp_backoff_restart_delay,
        Some(Duration::from_millis(100))
    );
    assert_eq!(a.stop_exit_codes, [0]);
    assert_eq!(a.max_memory_restart, Some(1 << 30));
    assert_eq!(a.cron_restart.as_deref(), Some("0 3 * * *"));
    assert_eq!(a.instance_var, "INSTANCE_ID");
    assert_eq!(a.max_instances, Some(4));
    assert_eq!(
        a.max_instances_reason.as_deref(),
        Some("ports are allocated from an in-memory set")
    );
    assert_eq!(a.log_date_format.as_deref(), Some("%Y-%m-%d %H:%M:%S%.3f"));
    assert_eq!(
        a.env.get("NODE_ENV").map(String::as_str),
        Some("development")
    );
    assert_eq!(a.validate(), Ok(()));
}

#[test]
fn defaults_are_pm2s() {
    let file = File::new(APP);
    let eco = file.load(&LoadOptions::default()).expect("valid");
    let want = AppConfig::with_defaults("a".into(), "x".into(), file.folder());
    assert_eq!(eco.apps, std::slice::from_ref(&want));
    assert_eq!(eco.path, file.folder().join("ecosystem.toml"));
    assert_eq!(want.exec_mode, ExecMode::Fork);
    assert_eq!(want.instances, 1);
    assert_eq!(want.host, None);
    assert!(!want.wait_ready);
    assert_eq!(want.listen_timeout, Duration::from_millis(3000));
    assert_eq!(want.kill_signal, "SIGINT");
    assert_eq!(want.kill_timeout, Duration::from_millis(1600));
    assert!(want.autorestart);
    assert_eq!(want.max_restarts, 16);
    assert_eq!(want.min_uptime, Duration::from_millis(1000));
    assert_eq!(want.restart_delay, Duration::ZERO);
    assert_eq!(want.exp_backoff_restart_delay, None);
    assert!(want.stop_exit_codes.is_empty() && want.args.is_empty() && want.env.is_empty());
    assert_eq!(want.instance_var, "INSTANCE_ID");
    assert_eq!(want.validate(), Ok(()));
}

#[test]
fn unit_forms_in_a_file() {
    let ms = Duration::from_millis;
    for (value, want) in [
        ("2500", ms(2500)),
        ("0", ms(0)),
        ("\"500ms\"", ms(500)),
        ("\"10s\"", ms(10_000)),
        ("\"2m\"", ms(120_000)),
        ("\"1h\"", ms(3_600_000)),
        ("\"1.5s\"", ms(1500)),
        ("\"750\"", ms(750)),
    ] {
        let eco = ok(&app(&format!("kill_timeout = {value}")));
        assert_eq!(eco.apps[0].kill_timeout, want, "{value}");
    }
    for (value, want) in [
        ("1048576", 1 << 20),
        ("\"512K\"", 512 << 10),
        ("\"150M\"", 150 << 20),
        ("\"150mb\"", 150 << 20),
        ("\"1G\"", 1 << 30),
        ("\"2gb\"", 2 << 30),
    ] {
        let eco = ok(&app(&format!("max_memory_restart = {value}")));
        assert_eq!(eco.apps[0].max_memory_restart, Some(want), "{value}");
    }
}

#[test]
fn other_value_forms() {
    let eco = ok(&app(
        "args = \"--port 80 'hello world'\"\nkill_signal = \"term\"\nstop_exit_codes = 3\nexec_mode = \"cluster_mode\"",
    ));
    let a = &eco.apps[0];
    assert_eq!(a.args, ["--port", "80", "hello world"]);
    assert_eq!(a.kill_signal, "SIGTERM");
    assert_eq!(a.stop_exit_codes, [3]);
    assert_eq!(a.exec_mode, ExecMode::Cluster);

    let eco = ok(&app("args = [\"-n\", 3, true]\nstop_exit_codes = [0, 255]"));
    assert_eq!(eco.apps[0].args, ["-n", "3", "true"]);
    assert_eq!(eco.apps[0].stop_exit_codes, [0, 255]);

    // Inline tables are tables too.
    let eco = ok("apps = [{ name = \"a\", script = \"x\" }, { name = \"b\", script = \"y\" }]");
    assert_eq!(eco.apps.len(), 2);
}

#[test]
fn instances_max_and_minus_one() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    for (value, want) in [
        ("\"max\"", cores),
        ("-1", cores.saturating_sub(1).max(1)),
        ("\"-1\"", cores.saturating_sub(1).max(1)),
        ("3", 3),
    ] {
        // With a port: a cluster of a program that is not Node needs one.
        let eco = ok(&app(&format!(
            "exec_mode = \"cluster\"\ninstances = {value}\nport = 3000"
        )));
        assert_eq!(eco.apps[0].instances, want, "{value}");
    }
    // Several fork instances are allowed.
    assert_eq!(ok(&app("instances = 2")).apps[0].instances, 2);
    assert_eq!(crate::parse_instances("max"), Ok(cores));
    assert!(crate::parse_instances("0").is_err());
}

#[test]
fn each_error_class_is_located_and_names_the_key() {
    // (file text, "line:column", text the message must contain)
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str)] = &[
        // syntax
        ("[[apps]]\nname = \"a\nscript = \"x\"\n", "2:10", "invalid TOML"),
        // unknown keys
        (&app("instnces = 2"), "4:1", "apps[0]: unknown key \"instnces\" (did you mean \"instances\"?)"),
        (&app("script2 = 1"), "4:1", "did you mean \"script\"?"),
        (&app("env_ = {}"), "4:1", "apps[0]: unknown key \"env_\""),
        ("version = 2\n[[apps]]\nname = \"a\"\nscript = \"x\"\n", "1:1", "unknown top-level key \"version\""),
        // wrong types
        (&app("instances = true"), "4:13", "apps[0].instances: expected an integer, \"max\" or -1, found a boolean"),
        (&app("port = \"80\""), "4:8", "apps[0].port: expected an integer port (1-65535), found a string"),
        (&app("autorestart = 1"), "4:15", "apps[0].autorestart: expected a boolean"),
        (&app("kill_timeout = 1.5"), "4:16", "apps[0].kill_timeout: expected a duration"),
        (&app("args = 3"), "4:8", "apps[0].args: expected an array of strings or a string, found an integer"),
        (&app("args = [\"a\", [1]]"), "4:14", "apps[0].args[1]: expected a string, found an array"),
        (&app("env = \"X=1\""), "4:7", "apps[0].env: expected a table"),
        (&app("env = { A = [1] }"), "4:13", "apps[0].env.A: expected a string"),
        (&app("exec_mode = 1"), "4:13", "apps[0].exec_mode: expected \"fork\" or \"cluster\""),
        ("apps = 3\n", "1:8", "apps: expected an array of tables"),
        ("apps = [1]\n", "1:9", "apps[0]: expected a table, found an integer"),
        // impossible values
        (&app("instances = 2\nmax_instances = 1\nmax_instances_reason = \"one socket\""), "4:13",
            "apps[0].instances: 2 instances exceed max_instances = 1 (one socket)"),
        (&app("port = 70000"), "4:8", "apps[0].port: 70000 is out of range (1-65535)"),
        (&app("exec_mode = \"cluster\"\ninstances = 2"), "4:13",
            "apps[0].exec_mode: cluster mode with 2 instances and no port: supd learns the port only of a Node app"),
        (&app("port = 0"), "4:8", "apps[0].port: 0 is out of range"),
        (&app("port = 80\nhost = \"300.1.1.1\""), "5:8", "apps[0].host: \"300.1.1.1\" is not an IP address; write an IPv4 or IPv6 address"),
        (&app("port = 80\nhost = \"example.com\""), "5:8", "apps[0].host: \"example.com\" is not an IP address"),
        (&app("port = 80\nhost = \"\""), "5:8", "apps[0].host: must not be empty"),
        (&app("port = 80\nhost = 127"), "5:8", "apps[0].host: expected a string, found an integer"),
        (&app("host = \"127.0.0.1\""), "4:8", "apps[0].host: has no effect without port"),
        ("[[apps]]\nname = \"a/b\"\nscript = \"x\"\n", "2:8", "apps[0].name: \"a/b\" is not a valid name"),
        ("[[apps]]\nname = \"all\"\nscript = \"x\"\n", "2:8", "apps[0].name: \"all\" is reserved"),
        (&format!("{APP}[[apps]]\nname = \"a\"\nscript = \"y\"\n"), "5:8",
            "apps[1].name: duplicate app name \"a\" (also apps[0], line 2)"),
        (&format!("{APP}port = 80\n[[apps]]\nname = \"b\"\nscript = \"y\"\nport = 80\n"), "8:8",
            "apps[1].port: 80 is already used by apps[0] \"a\""),
        (&app("instances = 0"), "4:13", "apps[0].instances: 0 is not allowed"),
        (&app("instances = -2"), "4:13", "apps[0].instances: -2 is not allowed"),
        (&app("instances = \"lots\""), "4:13", "apps[0].instances: \"lots\" is not"),
        (&app("max_instances = 0"), "4:17", "apps[0].max_instances: 0 is not allowed"),
        (&app("max_instances_reason = \"why\""), "4:24", "apps[0].max_instances_reason: has no effect without max_instances"),
        (&app("max_memory_restart = 0"), "4:22", "apps[0].max_memory_restart: 0 bytes is impossible"),
        (&app("max_memory_restart = \"1T\""), "4:22", "apps[0].max_memory_restart: \"1T\" has an unknown unit"),
        (&app("max_restarts = -1"), "4:16", "apps[0].max_restarts: -1 is not allowed"),
        (&app("kill_timeout = \"5 parsecs\""), "4:16", "apps[0].kill_timeout: \"5 parsecs\" has an unknown unit"),
        (&app("min_uptime = -5"), "4:14", "apps[0].min_uptime: -5 is negative"),
        (&app("restart_delay = \"soon\""), "4:17", "apps[0].restart_delay: \"soon\" is not a duration"),
        (&app("exp_backoff_restart_delay = 0"), "4:29", "apps[0].exp_backoff_restart_delay: must be more than 0"),
        (&app("kill_signal = \"SIGFOO\""), "4:15", "apps[0].kill_signal: \"SIGFOO\" is not a known signal"),
        (&app("cron_restart = \"0 3 * *\""), "4:16", "apps[0].cron_restart: \"0 3 * *\" is not a valid 5-field cron expression: "),
        (&app("log_date_format = \"%Y-%\""), "4:19", "apps[0].log_date_format: \"%Y-%\" is not a valid strftime format"),
        (&app("args = \"a 'b\""), "4:8", "apps[0].args: cannot split"),
        (&app("stop_exit_codes = [0, 256]"), "4:23", "apps[0].stop_exit_codes[1]: 256 is not an exit code (0-255)"),
        (&app("exec_mode = \"forks\""), "4:13", "apps[0].exec_mode: unknown mode \"forks\""),
        (&app("instance_var = \"1X\""), "4:16", "apps[0].instance_var: \"1X\" is not a valid environment variable name"),
        (&app("[apps.env]\nA-B = \"1\""), "5:1", "apps[0].env: \"A-B\" is not a valid environment variable name"),
        ("[[apps]]\nname = \"a\"\nscript = \"\"\n", "3:10", "apps[0].script: must not be empty"),
        // watch mode
        (&app("watch = 1"), "4:9", "apps[0].watch: expected true, false or an array of paths, found an integer"),
        (&app("watch = []"), "4:9", "apps[0].watch: an empty list watches nothing; write true"),
        (&app("watch = [\"\"]"), "4:10", "apps[0].watch[0]: must not be empty"),
        (&app("watch = [\".\", 2]"), "4:15", "apps[0].watch[1]: expected a string, found an integer"),
        (&app("watch = [\".\", \"nope\"]"), "4:15", "apps[0].watch[1]: \"nope\" does not exist ("),
        (&app("watch = \"nope/\""), "4:9", "apps[0].watch: \"nope/\" does not exist ("),
        (&app("cwd = \"nope\"\nwatch = true"), "5:9", "apps[0].watch: true watches the app's cwd, "),
        (&app("watch = true\nignore_watch = [\"*.log\", \"[a\"]"), "5:26", "apps[0].ignore_watch[1]: \"[a\" is not a valid glob pattern: "),
        (&app("watch = true\nignore_watch = \"\""), "5:16", "apps[0].ignore_watch: must not be empty"),
        (&app("watch = true\nignore_watch = 3"), "5:16", "apps[0].ignore_watch: expected a glob pattern or an array of them, found an integer"),
        (&app("watch = true\nwatch_delay = \"soon\""), "5:15", "apps[0].watch_delay: \"soon\" is not a duration"),
        (&app("ignore_watch = [\"*.log\"]"), "4:16", "apps[0].ignore_watch: has no effect without watch"),
        (&app("watch_delay = 200"), "4:15", "apps[0].watch_delay: has no effect without watch"),
        // missing things
        ("[[apps]]\nname = \"a\"\n", "1:1", "apps[0]: missing required key \"script\""),
        ("# nothing\n", "1:1", "no [[apps]] table"),
        ("apps = []\n", "1:8", "apps: at least one app is required"),
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
fn every_problem_in_one_pass() {
    let text = "\
[[apps]]
name = \"a\"
script = \"x\"
instnces = 4
port = 70000

[[apps]]
name = \"a\"
script = \"y\"
instances = true
kill_signal = \"SIGFOO\"
cron_restart = \"0 3 * *\"

[[apps]]
script = \"z\"
";
    let found = problems(text);
    let places: Vec<&str> = found
        .iter()
        .map(|p| p.split_once(": ").expect("place").0)
        .collect();
    assert_eq!(
        places,
        ["4:1", "5:8", "8:8", "10:13", "11:15", "12:16", "14:1"],
        "{found:#?}"
    );

    // Display: one `file:line:column: message` per line.
    let file = File::new(text);
    let shown = file
        .load(&LoadOptions::default())
        .expect_err("invalid")
        .to_string();
    assert_eq!(shown.lines().count(), 7);
    let first = shown.lines().next().expect("a line");
    assert_eq!(
        first,
        format!(
            "{}:4:1: apps[0]: unknown key \"instnces\" (did you mean \"instances\"?)",
            file.path.display()
        )
    );
}

#[test]
fn env_selection_merges_over_env() {
    let text = format!(
        "{APP}[apps.env]\nNODE_ENV = \"development\"\nLEVEL = 3\nDEBUG = true\nRATIO = 0.5\n\
         [apps.env_production]\nNODE_ENV = \"production\"\nEXTRA = \"yes\"\n\
         [[apps]]\nname = \"b\"\nscript = \"y\"\nenv = {{ NODE_ENV = \"dev\" }}\n"
    );
    let file = File::new(&text);
    let plain = file.load(&LoadOptions::default()).expect("valid");
    let env = &plain.apps[0].env;
    assert_eq!(env.len(), 4);
    assert_eq!(env["NODE_ENV"], "development");
    assert_eq!(env["LEVEL"], "3");
    assert_eq!(env["DEBUG"], "true");
    assert_eq!(env["RATIO"], "0.5");

    let opts = LoadOptions {
        env: Some("production".into()),
        only: None,
    };
    let prod = file.load(&opts).expect("valid");
    let env = &prod.apps[0].env;
    assert_eq!(env["NODE_ENV"], "production");
    assert_eq!(env["EXTRA"], "yes");
    assert_eq!(env["LEVEL"], "3");
    // An app without env_production just gets env.
    assert_eq!(prod.apps[1].env["NODE_ENV"], "dev");
}

#[test]
fn only_filters_in_file_order() {
    let text = "[[apps]]\nname = \"a\"\nscript = \"x\"\n[[apps]]\nname = \"b\"\nscript = \"x\"\n\
                [[apps]]\nname = \"c\"\nscript = \"x\"\n";
    let file = File::new(text);
    let only = |names: &[&str]| LoadOptions {
        env: None,
        only: Some(names.iter().map(|s| s.to_string()).collect()),
    };
    let eco = file.load(&only(&["c", "a"])).expect("valid");
    let names: Vec<&str> = eco.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);

    let err = file
        .load(&only(&["a", "x"]))
        .expect_err("x is not in the file");
    let [p] = err.problems.as_slice() else {
        panic!("{err}")
    };
    assert_eq!((p.line, p.column), (0, 0));
    assert_eq!(
        p.message,
        format!("--only: no app named \"x\" in {}", file.path.display())
    );

    // A problem in an app left out by --only still counts.
    let file = File::new(&format!(
        "{text}[[apps]]\nname = \"d\"\nscript = \"x\"\nport = 0\n"
    ));
    let err = file.load(&only(&["a"])).expect_err("d is invalid");
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].message.starts_with("apps[3].port"), "{err}");
}

#[test]
fn paths_resolve_against_the_files_folder() {
    let text = "[[apps]]\nname = \"rel\"\nscript = \"./bin/api\"\ncwd = \"data\"\n\
                [[apps]]\nname = \"bare\"\nscript = \"node\"\n\
                [[apps]]\nname = \"abs\"\nscript = \"/usr/bin/env\"\ncwd = \"/var/tmp\"\n\
                [[apps]]\nname = \"up\"\nscript = \"../tools/run\"\ncwd = \"./\"\n";
    let file = File::new(text);
    std::fs::create_dir(file.dir.path().join("sub")).expect("mkdir");
    // Loaded through a path with `..` in it: the folder is the real one,
    // while problems (none here) would show the path as given.
    let given = file.dir.path().join("sub/../ecosystem.toml");
    let eco = load(&given, &LoadOptions::default()).expect("valid");
    let dir = file.folder();
    assert_eq!(eco.path, dir.join("ecosystem.toml"));
    let by_name = |name: &str| eco.apps.iter().find(|a| a.name == name).expect(name);
    assert_eq!(
        by_name("rel").script,
        dir.join("bin/api").to_str().expect("utf-8")
    );
    assert_eq!(by_name("rel").cwd, dir.join("data"));
    assert_eq!(by_name("bare").script, "node");
    assert_eq!(by_name("bare").cwd, dir);
    assert_eq!(by_name("abs").script, "/usr/bin/env");
    assert_eq!(by_name("abs").cwd, Path::new("/var/tmp"));
    let parent = dir.parent().expect("a parent");
    assert_eq!(
        by_name("up").script,
        parent.join("tools/run").to_str().expect("utf-8")
    );
    assert_eq!(by_name("up").cwd, dir);
}

#[test]
fn the_displayed_path_is_the_one_given() {
    let file = File::new(&app("port = 0"));
    let given = file.dir.path().join(".").join("ecosystem.toml");
    let err = load(&given, &LoadOptions::default()).expect_err("invalid");
    assert_eq!(err.problems[0].file, given);
}

#[test]
fn an_unreadable_file_is_one_problem_without_a_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.toml");
    let err = load(&path, &LoadOptions::default()).expect_err("missing");
    let [p] = err.problems.as_slice() else {
        panic!("{err}")
    };
    assert_eq!((p.line, p.column), (0, 0));
    assert!(
        p.message.contains("No such file or directory"),
        "{}",
        p.message
    );

    // Not UTF-8.
    let path = dir.path().join("binary.toml");
    std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
    assert_eq!(
        load(&path, &LoadOptions::default())
            .expect_err("binary")
            .problems[0]
            .line,
        0
    );
}

#[test]
fn watch_paths_resolve_against_the_apps_cwd() {
    let file = File::new(
        "[[apps]]\nname = \"all-of-it\"\nscript = \"x\"\nwatch = true\n\
         [[apps]]\nname = \"some\"\nscript = \"x\"\ncwd = \"svc\"\nwatch = [\"src\", \"../shared.js\"]\n\
         ignore_watch = \"*.tmp\"\nwatch_delay = \"200ms\"\n\
         [[apps]]\nname = \"one\"\nscript = \"x\"\nwatch = \"/\"\n\
         [[apps]]\nname = \"off\"\nscript = \"x\"\nwatch = false\nignore_watch = [\"tmp/**\"]\n\
         [[apps]]\nname = \"none\"\nscript = \"x\"\n",
    );
    std::fs::create_dir_all(file.dir.path().join("svc/src")).expect("mkdir");
    std::fs::write(file.dir.path().join("shared.js"), "").expect("write");
    let eco = file.load(&LoadOptions::default()).expect("valid");
    let dir = file.folder();
    let by_name = |name: &str| eco.apps.iter().find(|a| a.name == name).expect(name);
    assert_eq!(by_name("all-of-it").watch, std::slice::from_ref(&dir));
    let some = by_name("some");
    assert_eq!(some.watch, [dir.join("svc/src"), dir.join("shared.js")]);
    assert_eq!(some.ignore_watch, ["*.tmp"]);
    assert_eq!(some.watch_delay, Duration::from_millis(200));
    assert_eq!(by_name("one").watch, [Path::new("/")]);
    // `false` keeps its tuning, so watching can be turned off and on again.
    let off = by_name("off");
    assert!(off.watch.is_empty());
    assert_eq!(off.ignore_watch, ["tmp/**"]);
    let none = by_name("none");
    assert!(none.watch.is_empty() && none.ignore_watch.is_empty());
    assert_eq!(none.watch_delay, Duration::from_millis(1000));
    for app in &eco.apps {
        assert_eq!(app.validate(), Ok(()), "{}", app.name);
    }
    let set = some.watch_ignore().expect("valid patterns");
    assert!(set.is_match("a.tmp") && !set.is_match("src/a.tmp"));
    // `tmp/**` is the folder too, as in PM2.
    let set = off.watch_ignore().expect("valid patterns");
    assert!(set.is_match("tmp") && set.is_match("tmp/a/b") && !set.is_match("tmpx"));
}

/// An edit that makes a valid app invalid.
type Change = fn(&mut AppConfig);

#[test]
fn validate_checks_ad_hoc_apps() {
    let base = AppConfig::with_defaults("web".into(), "node".into(), "/srv".into());
    assert_eq!(base.validate(), Ok(()));
    let cases: &[(Change, &str)] = &[
        (
            |a| a.name = "a/b".into(),
            "name: \"a/b\" is not a valid name",
        ),
        (|a| a.name = String::new(), "name: must not be empty"),
        (|a| a.instances = 0, "instances: must be at least 1"),
        (
            |a| a.max_instances = Some(0),
            "max_instances: must be at least 1",
        ),
        (
            |a| {
                a.instances = 3;
                a.max_instances = Some(1);
                a.max_instances_reason = Some("one socket".into());
            },
            "instances: 3 instances exceed max_instances = 1 (one socket)",
        ),
        (|a| a.port = Some(0), "port: 0 is out of range"),
        (
            |a| a.host = Some([127, 0, 0, 1].into()),
            "host: has no effect without port",
        ),
        (
            |a| {
                a.port = Some(80);
                a.host = Some([224, 0, 0, 1].into());
            },
            "host: 224.0.0.1 is a multicast address",
        ),
        (|a| a.max_memory_restart = Some(0), "max_memory_restart:"),
        (|a| a.kill_signal = "SIGNOPE".into(), "kill_signal:"),
        (
            |a| a.kill_signal = "term".into(),
            "kill_signal: write \"term\" as \"SIGTERM\"",
        ),
        (|a| a.instance_var = "A B".into(), "instance_var:"),
        (|a| a.cron_restart = Some("nope".into()), "cron_restart:"),
        (|a| a.log_date_format = Some("%".into()), "log_date_format:"),
        (
            |a| a.watch = vec!["src".into()],
            "watch: \"src\" is not an absolute path",
        ),
        (
            |a| a.ignore_watch = vec!["{a".into()],
            "ignore_watch: \"{a\" is not a valid glob pattern",
        ),
    ];
    for (change, want) in cases {
        let mut app = base.clone();
        change(&mut app);
        let err = app.validate().expect_err(want);
        assert!(err.starts_with(want), "want {want:?}, found {err:?}");
    }
}

#[test]
fn public_helpers() {
    assert_eq!(crate::parse_signal("usr2").as_deref(), Ok("SIGUSR2"));
    assert!(crate::valid_name("api-gateway.v2_1"));
    assert!(!crate::valid_name("..") && !crate::valid_name("a b"));
    assert!(crate::valid_env_name("NODE_ENV") && !crate::valid_env_name("2X"));
    assert_eq!(crate::parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(crate::parse_size("1G"), Ok(1 << 30));
    assert_eq!(crate::parse_host("localhost"), Ok([127, 0, 0, 1].into()));
}

mod daemon_and_health;
mod files;

#[test]
fn js_and_py_scripts_run_through_their_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eco.toml");
    std::fs::write(
        &file,
        "[[apps]]\nname = \"web\"\nscript = \"./server.js\"\nargs = [\"--verbose\"]\n\n[[apps]]\nname = \"job\"\nscript = \"job.py\"\n\n[[apps]]\nname = \"bin\"\nscript = \"./bin/api\"\n",
    )
    .unwrap();
    let eco = crate::load(&file, &crate::LoadOptions::default()).unwrap();
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(eco.apps[0].script, "node");
    assert_eq!(
        eco.apps[0].args,
        [
            root.join("server.js").display().to_string(),
            "--verbose".into()
        ]
    );
    assert_eq!(eco.apps[1].script, "python3");
    assert_eq!(eco.apps[1].args, ["job.py"]);
    assert_eq!(
        eco.apps[2].script,
        root.join("bin/api").display().to_string()
    );
}
