//! `supctl import`: PM2 ecosystem files (.js, .json, .yaml) printed as
//! ecosystem.toml that `supctl check` accepts, with the keys it could not
//! map listed on stderr.

use crate::support::Supd;

/// Runs `supctl import FILE`, asserts success; (stdout, stderr).
fn import(supd: &Supd, file: &str) -> (String, String) {
    let out = supd.run(&["import", file]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "import {file} failed: {stderr}\n{stdout}"
    );
    (stdout, stderr)
}

/// Writes the imported text next to the PM2 file and asserts that
/// `supctl check` accepts it, also with `--env production`.
fn checks(supd: &Supd, name: &str, toml: &str, apps: &str) {
    let path = supd.write(name, toml);
    let path = path.to_str().unwrap();
    let out = supd.ok(&["check", path]);
    assert!(out.contains(apps), "check lists {apps}: {out}\n{toml}");
    supd.ok(&["check", path, "--env", "production"]);
}

/// The `[[apps]]` table (up to the next `[[apps]]`) whose name is `name`.
fn app<'a>(toml: &'a str, name: &str) -> &'a str {
    toml.split("[[apps]]")
        .find(|t| t.contains(&format!("name = \"{name}\"\n")))
        .unwrap_or_else(|| panic!("no app {name} in:\n{toml}"))
}

#[test]
fn import_js_cluster_app_and_python_worker() {
    let supd = Supd::new();
    supd.write(
        "ecosystem.config.js",
        r#"// a PM2 file as people write them
const base = { autorestart: false };
module.exports = {
  apps: [
    {
      name: 'api',
      script: './server.js',
      instances: 'max',
      exec_mode: 'cluster_mode',
      env: { NODE_ENV: 'development' },
      env_production: { NODE_ENV: 'production' },
      max_memory_restart: '300M',
      watch: true,
      log_date_format: 'YYYY-MM-DD HH:mm:ss',
    },
    {
      name: 'worker',
      script: 'worker.py',
      interpreter: 'python3',
      ...base,
      cron_restart: '0 3 * * *',
    },
  ],
};
"#,
    );
    let (toml, err) = import(&supd, "ecosystem.config.js");
    assert!(
        toml.starts_with("# imported from ecosystem.config.js by supctl import\n"),
        "{toml}"
    );
    checks(&supd, "imported.toml", &toml, "2 app(s): api, worker");

    let api = app(&toml, "api");
    for line in [
        "script = \"node\"\n",
        "args = [\"./server.js\"]\n",
        "exec_mode = \"cluster\"\n",
        "instances = \"max\"\n",
        "max_memory_restart = \"300M\"\n",
        "log_date_format = \"%Y-%m-%d %H:%M:%S\"\n",
        "[apps.env]\nNODE_ENV = \"development\"\n",
        "[apps.env_production]\nNODE_ENV = \"production\"\n",
        "watch = true\n",
    ] {
        assert!(api.contains(line), "api has {line:?}:\n{api}");
    }
    let worker = app(&toml, "worker");
    for line in [
        "script = \"python3\"\n",
        "args = [\"worker.py\"]\n",
        "autorestart = false\n",
        "cron_restart = \"0 3 * * *\"\n",
    ] {
        assert!(worker.contains(line), "worker has {line:?}:\n{worker}");
    }
    assert!(!worker.contains("interpreter"), "{worker}");

    assert!(!err.contains("watch"), "watch is imported: {err}");
    // node learns its port at its first listen(): no port is asked for.
    assert!(!api.contains("\nport"), "{api}");
    assert!(!err.contains("port"), "{err}");
}

#[test]
fn import_json_array_of_apps() {
    let supd = Supd::new();
    supd.script("bin-server", "sleep 60");
    supd.write(
        "ecosystem.json",
        r#"[
  {
    "name": "web",
    "script": "app.js",
    "node_args": "--max-old-space-size=512",
    "args": "--mode 'two words'",
    "exec_mode": "cluster",
    "instances": "4",
    "wait_ready": true,
    "listen_timeout": 8000,
    "kill_timeout": "3s",
    "min_uptime": "10s",
    "exp_backoff_restart_delay": 100,
    "stop_exit_codes": 0,
    "max_memory_restart": 157286400,
    "log_date_format": "YYYY-MM-DD HH:mm Z",
    "merge_logs": true,
    "out_file": "/var/log/web.out",
    "error_file": "/var/log/web.err",
    "env": { "PORT": 3100, "DEBUG": false },
    "env_staging": { "DEBUG": true }
  },
  { "script": "bin-server", "kill_signal": "SIGTERM", "max_restarts": 3 }
]
"#,
    );
    let (toml, err) = import(&supd, "ecosystem.json");
    checks(&supd, "web.toml", &toml, "2 app(s): web, bin-server");
    let web = app(&toml, "web");
    for line in [
        "script = \"node\"\n",
        "args = [\"--max-old-space-size=512\", \"app.js\", \"--mode\", \"two words\"]\n",
        "exec_mode = \"cluster\"\n",
        "instances = 4\n",
        "port = 3100\n",
        "wait_ready = true\n",
        "listen_timeout = 8000\n",
        "kill_timeout = \"3s\"\n",
        "min_uptime = \"10s\"\n",
        "exp_backoff_restart_delay = 100\n",
        "stop_exit_codes = [0]\n",
        "max_memory_restart = 157286400\n",
        "log_date_format = \"%Y-%m-%d %H:%M %:z\"\n",
        "PORT = \"3100\"\n",
        "[apps.env_staging]\nDEBUG = \"true\"\n",
    ] {
        assert!(web.contains(line), "web has {line:?}:\n{web}");
    }
    let server = app(&toml, "bin-server");
    for line in [
        "script = \"./bin-server\"\n",
        "kill_signal = \"SIGTERM\"\n",
        "max_restarts = 3\n",
    ] {
        assert!(server.contains(line), "bin-server has {line:?}:\n{server}");
    }
    // PM2's log files keep their meaning.
    for line in [
        "out_file = \"/var/log/web.out\"\n",
        "error_file = \"/var/log/web.err\"\n",
    ] {
        assert!(web.contains(line), "web has {line:?}:\n{web}");
    }
    assert!(
        err.contains("apps[0].port: set to 3100 from env.PORT"),
        "{err}"
    );
    assert!(err.contains("apps[1].name: not set"), "{err}");
}

#[test]
fn import_yaml_file() {
    let supd = Supd::new();
    supd.write(
        "ecosystem.yaml",
        "apps:\n  - name: queue\n    script: ./queue.sh\n    args: [--fast, 3]\n    cron_restart: '0 0 4 * * *'\n    instances: 2\n    vizion: false\n    env_production:\n      RATE: 10\n",
    );
    let (toml, err) = import(&supd, "ecosystem.yaml");
    checks(&supd, "queue.toml", &toml, "1 app(s): queue");
    for line in [
        "script = \"bash\"\n",
        "args = [\"./queue.sh\", \"--fast\", \"3\"]\n",
        "instances = 2\n",
        "cron_restart = \"0 4 * * *\"\n",
        "[apps.env_production]\nRATE = \"10\"\n",
    ] {
        assert!(toml.contains(line), "queue has {line:?}:\n{toml}");
    }
    assert!(err.contains("apps[0].vizion: not supported"), "{err}");
    assert!(err.contains("apps[0].cron_restart: seconds field"), "{err}");
}

#[test]
fn import_unreadable_files_fail_with_one_line() {
    let supd = Supd::new();
    let err = supd.fails(&["import", "missing.config.js"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing.config.js"), "{err}");

    supd.write(
        "broken.config.js",
        "module.exports = { apps: [ { name: 'x', ] };\n",
    );
    let err = supd.fails(&["import", "broken.config.js"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("broken.config.js"), "{err}");

    supd.write("broken.json", "{ \"apps\": [ }");
    let err = supd.fails(&["import", "broken.json"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("broken.json: invalid JSON"), "{err}");

    supd.write("empty.json", "{ \"apps\": [] }");
    let err = supd.fails(&["import", "empty.json"]);
    assert!(err.contains("empty.json"), "{err}");
}

#[test]
fn import_watch_mode() {
    let supd = Supd::new();
    std::fs::create_dir_all(supd.work().join("api/src")).unwrap();
    supd.write(
        "watching.json",
        r#"{ "apps": [
  {
    "name": "api",
    "script": "server.js",
    "cwd": "api",
    "watch": ["src", "missing", 3],
    "ignore_watch": ["*.log", "[bad", {}],
    "watch_delay": 500,
    "watch_options": { "usePolling": true }
  },
  { "name": "whole", "script": "server.js", "watch": [], "watch_delay": "2s" },
  { "name": "off", "script": "server.js", "ignore_watch": "tmp/**", "watch_delay": 100 }
] }
"#,
    );
    let (toml, err) = import(&supd, "watching.json");
    checks(&supd, "watching.toml", &toml, "3 app(s): api, whole, off");
    let api = app(&toml, "api");
    for line in [
        "watch = [\"src\"]\n",
        "ignore_watch = [\"*.log\"]\n",
        "watch_delay = 500\n",
        "# not imported: watch_options: not supported",
    ] {
        assert!(api.contains(line), "api has {line:?}:\n{api}");
    }
    let whole = app(&toml, "whole");
    assert!(
        whole.contains("watch = true\nwatch_delay = \"2s\"\n"),
        "{whole}"
    );
    let off = app(&toml, "off");
    assert!(
        !off.contains("\nwatch") && !off.contains("\nignore_watch"),
        "{off}"
    );
    for note in [
        "apps[0].watch[1]: \"missing\" does not exist in ",
        "apps[0].watch[2]: expected a path, found a number, left out",
        "apps[0].ignore_watch[1]: \"[bad\" is not a valid glob pattern",
        "apps[0].ignore_watch[2]: an object cannot be imported (a regular expression?)",
        "apps[1].watch: [] watches the app's cwd in PM2; written true",
        "apps[2].ignore_watch: has no effect without watch",
        "apps[2].watch_delay: has no effect without watch",
    ] {
        assert!(err.contains(note), "stderr has {note:?}:\n{err}");
    }
}
