//! Real PM2 files from public repositories (tests/fixtures/pm2, sources
//! and PM2's behaviour in its README.md): `supctl import` gives each app
//! the mode, instances and program PM2 gives it, `supctl check` takes the
//! PM2 file as it is, and `start`/`stop`/`reload`/`delete` run one directly.

use std::path::Path;

use crate::support::{Supd, fixture};

/// Copies fixture `pm2/NAME` into the test's work folder.
fn copy(supd: &Supd, name: &str) -> std::path::PathBuf {
    let to = supd.work().join(name);
    std::fs::copy(fixture(&format!("pm2/{name}")), &to).expect("copy fixture");
    to
}

/// What PM2 makes of one app of a fixture, as the README's table says:
/// (file, app, cluster mode, `instances` as written to TOML, program, args).
type Expected = (
    &'static str,
    &'static str,
    bool,
    &'static str,
    &'static str,
    &'static [&'static str],
);

/// Each app of the eleven files.
const EXPECTED: &[Expected] = &[
    (
        "ecobackend.config.js",
        "ecobackend",
        true,
        "2",
        "node",
        &["./server.js"],
    ),
    (
        "ingeniumfe.config.js",
        "ingeniumfe",
        false,
        "",
        "bash",
        &["-c", "npm run start"],
    ),
    (
        "process-run-manager.config.js",
        "olx-cron-manager",
        false,
        "",
        "node",
        &["./index.js"],
    ),
    (
        "pm-backend.config.cjs",
        "pm",
        true,
        "1",
        "node",
        &["app.js"],
    ),
    (
        "weixin-scan-login.config.js",
        "FRPS.IMCOCO._8994",
        true,
        "1",
        "node",
        &["--harmony", "./dist/main.js"],
    ),
    (
        "koa2-startkit.json",
        "koa2-startkit",
        true,
        "\"max\"",
        "node",
        &["bin/production.js"],
    ),
    (
        "pm2-two-process.json",
        "cron1",
        false,
        "",
        "node",
        &["server.js", "--cronName=cron1"],
    ),
    (
        "pm2-two-process.json",
        "cron2",
        false,
        "",
        "node",
        &["server.js", "--cronName=cron2"],
    ),
    (
        "ban-plateforme.yml",
        "ban-api",
        true,
        "2",
        "node",
        &["server.js"],
    ),
    (
        "ban-plateforme.yml",
        "ban-worker",
        true,
        "4",
        "node",
        &["worker.js"],
    ),
    (
        "node-micro-services.yml",
        "api",
        true,
        "1",
        "node",
        &["./services/example-api/app.js"],
    ),
    (
        "node-micro-services.yml",
        "engine",
        true,
        "1",
        "node",
        &["./services/example-engine/app.js"],
    ),
    (
        "crawler.yml",
        "crawler",
        true,
        "\"max\"",
        "node",
        &["./index.mjs"],
    ),
];

/// The `[[apps]]` table of `name` in imported TOML.
fn table<'a>(toml: &'a str, name: &str) -> &'a str {
    toml.split("[[apps]]")
        .find(|t| t.contains(&format!("\nname = \"{name}\"\n")))
        .unwrap_or_else(|| panic!("no app {name} in:\n{toml}"))
}

#[test]
fn ten_real_pm2_files_import_as_pm2_runs_them() {
    let supd = Supd::new();
    let mut files: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    files.dedup();
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        copy(&supd, file);
        let out = supd.run(&["import", file]);
        let toml = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "import {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The PM2 file itself passes check (converted as import converts it).
        let checked = supd.ok(&["check", file]);
        assert!(checked.starts_with(&format!("{file}: ok")), "{checked}");

        let eco = supd_config::load_str(
            &toml,
            &supd.work().join("imported.toml"),
            &supd_config::LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{file}: {e}\n{toml}"));
        for (_, name, cluster, instances, script, args) in EXPECTED.iter().filter(|e| e.0 == *file)
        {
            let app = eco
                .apps
                .iter()
                .find(|a| a.name == *name)
                .unwrap_or_else(|| panic!("{file}: no app {name}"));
            let t = table(&toml, name);
            assert_eq!(
                app.exec_mode == supd_config::ExecMode::Cluster,
                *cluster,
                "{file} {name}: mode\n{t}"
            );
            if instances.is_empty() {
                assert!(!t.contains("\ninstances"), "{file} {name}:\n{t}");
            } else {
                assert!(
                    t.contains(&format!("\ninstances = {instances}\n")),
                    "{file} {name}:\n{t}"
                );
            }
            assert_eq!(app.script, *script, "{file} {name}: script\n{t}");
            assert_eq!(app.args, *args, "{file} {name}: args\n{t}");
        }
    }
}

/// The real files that need more than a copy: a cluster of `npm start`
/// without a port (refused), `port` as env.PORT, JSON with comments, a key
/// PM2 does not know written as a comment.
#[test]
fn real_pm2_files_keep_their_log_files_ports_and_aliases() {
    let supd = Supd::new();
    for file in [
        "doo-sync-obsidian.config.js",
        "ingeniumfe.config.js",
        "pm2-two-process.json",
        "ban-plateforme.yml",
    ] {
        copy(&supd, file);
    }
    // Two instances of `npm start` in cluster mode without a port: under
    // PM2 each binds the port itself and all but one fail; supd refuses the
    // app, naming it, and says how to write it.
    let err = supd.fails(&["import", "doo-sync-obsidian.config.js"]);
    assert!(
        err.contains("doo_sync_obsidian") && err.contains("set port (or env.PORT)"),
        "{err}"
    );
    let err = supd.fails(&["start", "doo-sync-obsidian.config.js"]);
    assert!(err.contains("doo_sync_obsidian"), "{err}");
    assert!(supd.daemon_pid().is_none(), "nothing was started");
    let out = supd.run(&["import", "ingeniumfe.config.js"]);
    let toml = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        toml.contains("[apps.env]\nNODE_ENV = \"development\"\nPORT = \"3000\"\n"),
        "{toml}"
    );
    assert!(
        err.contains("apps[0].args: left out: PM2 runs a script with spaces as `bash -c SCRIPT`"),
        "{err}"
    );
    let toml = supd.ok(&["import", "pm2-two-process.json"]);
    assert!(
        toml.contains("# not imported: instance: not a PM2 key supd knows"),
        "{toml}"
    );
    let toml = supd.ok(&["import", "ban-plateforme.yml"]);
    assert!(
        table(&toml, "ban-api").contains("\nport = 5000\n"),
        "{toml}"
    );
}

/// A PM2 file of a real repository started directly: its app comes
/// online (not node running the config file), and stop, reload and delete
/// take the file too.
#[test]
fn a_real_pm2_file_runs_directly() {
    let supd = Supd::new();
    let file = copy(&supd, "process-run-manager.config.js");
    supd.write(
        "index.js",
        "console.log('cron manager up');\nsetInterval(() => {}, 1000);\n",
    );
    let out = supd.run(&["start", "process-run-manager.config.js"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("started olx-cron-manager"), "{stdout}");
    let row = supd.wait_instance("olx-cron-manager", 0, "online", |p| p["status"] == "online");
    let pid = row["pid"].as_u64().expect("pid");
    assert_eq!(supd.list().len(), 1, "only the file's app runs");
    // `cwd: __dirname` is the folder of the file, as node evaluates it.
    let show = supd.show("olx-cron-manager");
    assert_eq!(
        Path::new(show["config"]["cwd"].as_str().unwrap_or_default()),
        file.parent().unwrap(),
        "{show}"
    );

    let out = supd.ok(&["reload", "process-run-manager.config.js"]);
    assert!(out.contains("reloaded olx-cron-manager"), "{out}");
    supd.wait_instance("olx-cron-manager", 0, "a new process", |p| {
        p["status"] == "online" && p["pid"].as_u64() != Some(pid)
    });
    let out = supd.ok(&["stop", "process-run-manager.config.js"]);
    assert!(out.contains("stopped olx-cron-manager"), "{out}");
    supd.wait_instance("olx-cron-manager", 0, "stopped", |p| {
        p["status"] == "stopped"
    });
    let out = supd.ok(&["delete", "process-run-manager.config.js"]);
    assert!(out.contains("deleted olx-cron-manager"), "{out}");
    assert!(supd.list().is_empty(), "{:?}", supd.list());
}

/// An app PM2 could not start either is an error naming it, exit 1, and
/// nothing is started.
#[test]
fn an_app_that_cannot_be_imported_is_an_error() {
    let supd = Supd::new();
    supd.write(
        "broken.config.js",
        "module.exports = { apps: [ { name: 'web', script: 'web.js' }, { name: 'worker', instances: 2 } ] };\n",
    );
    for cmd in ["import", "check", "start"] {
        let err = supd.fails(&[cmd, "broken.config.js"]);
        assert!(
            err.contains("broken.config.js: apps[1] (\"worker\") cannot be imported: no script"),
            "{cmd}: {err}"
        );
    }
    assert!(supd.list().is_empty());
}

/// PM2's aliases and rules on a file written the way PM2's docs allow.
#[test]
fn pm2_aliases_time_and_script_with_spaces() {
    let supd = Supd::new();
    supd.write(
        "aliases.config.js",
        r#"module.exports = { apps: [
  { exec: 'api.js', instances: 2, port: 4100, out: 'api.out', err: 'api.err', pid: 'api.pid',
    interpreterArgs: '--max-old-space-size=256', cron: '0 3 * * *', time: true,
    log_date_format: 'HH:mm' },
  { script: 'npm run start:prod', log: 'all.log' },
  { script: 'both.js', out_file: 'both.log', error_file: './both.log', pid_file: 'both.log' },
] };
"#,
    );
    let out = supd.run(&["import", "aliases.config.js"]);
    let toml = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let api = table(&toml, "api");
    for line in [
        "script = \"node\"\n",
        "args = [\"--max-old-space-size=256\", \"api.js\"]\n",
        "exec_mode = \"cluster\"\n",
        "instances = 2\n",
        "port = 4100\n",
        "cron_restart = \"0 3 * * *\"\n",
        "log_date_format = \"%Y-%m-%dT%H:%M:%S\"\n",
        "out_file = \"api.out\"\n",
        "error_file = \"api.err\"\n",
        "pid_file = \"api.pid\"\n",
    ] {
        assert!(api.contains(line), "{line:?}:\n{api}");
    }
    let npm = table(&toml, "npm-run-start-prod");
    for line in [
        "script = \"bash\"\n",
        "args = [\"-c\", \"npm run start:prod\"]\n",
        "log_file = \"all.log\"\n",
    ] {
        assert!(npm.contains(line), "{line:?}:\n{npm}");
    }
    assert!(!npm.contains("exec_mode"), "{npm}");
    // PM2 appends both streams to one file: supd's log_file.
    let both = table(&toml, "both");
    assert!(both.contains("log_file = \"both.log\"\n"), "{both}");
    assert!(
        !both.contains("\nout_file") && !both.contains("\nerror_file"),
        "{both}"
    );
    assert!(
        both.contains("# not imported: pid_file: both.log is also log_file"),
        "{both}"
    );
    supd.ok(&["check", "aliases.config.js"]);
}
