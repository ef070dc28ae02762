//! One PM2 app object mapped to one `[[apps]]` table: each key through its
//! entry in [`crate::keys`], then what depends on several keys (script and
//! interpreter, cluster mode, port) resolved as PM2 resolves it.

use std::path::Path;

use serde_json::{Map, Value};
use supd_config::NodeProgram;
use toml::Value as T;

use crate::draft::Draft;
use crate::keys::{Rule, find};
use crate::script::{default_interpreter, in_path, is_command_line, pm2_cluster, shell};
use crate::values::{ignore_watch, strings, watch};

/// The supd keys in the order they are printed.
use supd_config::APP_KEYS as ORDER;

/// PM2's `time: true` format (`YYYY-MM-DDTHH:mm:ss`), as chrono writes it.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// One converted app.
pub struct App {
    /// The app's name.
    pub name: String,
    /// Keys and values, in [`ORDER`].
    keys: Vec<(&'static str, T)>,
    /// `env`, then each `env_<name>` in the order found.
    envs: Vec<(String, Vec<(String, String)>)>,
    /// Keys not imported, as comments in the output.
    skipped: Vec<String>,
}

impl App {
    /// Changes the name (a duplicate).
    pub fn rename(&mut self, name: String) {
        self.name = name.clone();
        for (k, v) in &mut self.keys {
            if *k == "name" {
                *v = T::String(name.clone());
            }
        }
    }

    /// The port the daemon is to bind for the app, if any.
    pub fn port(&self) -> Option<i64> {
        self.keys
            .iter()
            .find(|(k, _)| *k == "port")
            .and_then(|(_, v)| v.as_integer())
    }

    /// Leaves the port out (an earlier app has it).
    pub fn drop_port(&mut self) {
        self.keys.retain(|(k, _)| *k != "port");
    }

    /// The `[[apps]]` table and its env tables.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("[[apps]]\n");
        for key in ORDER {
            if let Some((_, v)) = self.keys.iter().find(|(k, _)| k == key) {
                out.push_str(&format!("{key} = {v}\n"));
            }
        }
        for s in &self.skipped {
            out.push_str(&format!("# not imported: {}\n", one_line(s)));
        }
        for (table, vars) in &self.envs {
            out.push_str(&format!("\n[apps.{}]\n", key(table)));
            for (k, v) in vars {
                out.push_str(&format!("{} = {}\n", key(k), T::String(v.clone())));
            }
        }
        out
    }
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), so a key
/// or value from the PM2 file cannot end a note's line or a TOML comment
/// (fuzzing found a key with an escape character making the TOML invalid).
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A TOML key, bare when it can be.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        T::String(k.to_string()).to_string()
    }
}

/// Converts `apps[index]`, pushing a note for each key not mapped (or mapped
/// with a change). An error (the reason) when the app cannot be imported.
pub fn convert(
    app: &Map<String, Value>,
    index: usize,
    base: &Path,
    notes: &mut Vec<String>,
) -> Result<App, String> {
    let mut d = Draft::new(index);
    for (k, v) in app {
        let outcome = match find(k).map(|key| &key.rule) {
            Some(Rule::Map(convert)) => convert(&mut d, k, v),
            Some(Rule::Drop(why)) => Err((*why).to_string()),
            None => Err("not a PM2 key supd knows, not imported".into()),
        };
        if let Err(why) = outcome {
            d.skip(k, &why);
        }
    }
    let result = finish(&mut d, base);
    notes.append(&mut d.notes);
    result
}

/// Resolves what depends on several keys, as PM2 does.
fn finish(d: &mut Draft, base: &Path) -> Result<App, String> {
    let Some(script) = d.script.clone() else {
        return Err("no script (PM2 needs one: script, or its alias exec)".into());
    };
    let name = app_name(d, &script);
    d.keys.insert(0, ("name", T::String(name.clone())));
    if d.time {
        if d.get("log_date_format").is_some() {
            d.note(
                "time",
                "true sets PM2's own date format over log_date_format".into(),
            );
        }
        d.set("log_date_format", T::String(TIME_FORMAT.into()))?;
    }
    if let Some(port) = d.port.take() {
        set_env_port(d, port);
    }
    one_writer_per_file(d);
    let interpreter = program(d, &script, base);
    watch_keys(d, base);
    if let Some(cwd) = d.cwd.clone() {
        d.set("cwd", T::String(cwd))?;
    }
    if pm2_cluster(d.cluster, d.instances, interpreter.as_deref()) {
        cluster(d)?;
    }
    Ok(App {
        name,
        keys: std::mem::take(&mut d.keys),
        envs: std::mem::take(&mut d.envs),
        skipped: std::mem::take(&mut d.skipped),
    })
}

/// The app's name: as written (with the characters supd refuses replaced),
/// else PM2's default: the script's file name without its extension, or the
/// whole command line for a script with spaces.
fn app_name(d: &mut Draft, script: &str) -> String {
    match d.name.clone() {
        Some(n) if supd_config::valid_name(&n) && n != "all" => n,
        Some(n) => {
            let clean = sanitize(&n);
            d.note(
                "name",
                format!(
                    "{n:?} has characters supd refuses ([A-Za-z0-9._-] only); written \"{clean}\""
                ),
            );
            clean
        }
        None => {
            let default = if is_command_line(script) {
                script.to_string()
            } else {
                Path::new(script)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let clean = sanitize(&default);
            d.note(
                "name",
                format!("not set; \"{clean}\" from the script, as PM2 does"),
            );
            clean
        }
    }
}

/// PM2's `port` key: `env.PORT`, unless `env` sets PORT itself.
fn set_env_port(d: &mut Draft, port: String) {
    if d.envs.iter().all(|(t, _)| t != "env") {
        d.envs.insert(0, ("env".into(), Vec::new()));
    }
    let vars = &mut d.envs[0].1;
    if !vars.iter().any(|(k, _)| k == "PORT") {
        vars.push(("PORT".into(), port));
    }
}

/// Sets `script` and `args` to what PM2 runs; the interpreter PM2 uses (for
/// its cluster rule).
fn program(d: &mut Draft, script: &str, base: &Path) -> Option<String> {
    if is_command_line(script) {
        // PM2: `bash -c SCRIPT`, its `args` and interpreter unused.
        for k in ["args", "interpreter", "interpreter_args"] {
            let unused = match k {
                "args" => d.args.is_some(),
                "interpreter" => d.interpreter.is_some(),
                _ => !d.interp_args.is_empty(),
            };
            if unused {
                d.note(k, "left out: PM2 runs a script with spaces as `bash -c SCRIPT` and does not use it".into());
            }
        }
        let shell = shell();
        d.keys.insert(1, ("script", T::String(shell.into())));
        d.keys
            .insert(2, ("args", strings(vec!["-c".into(), script.into()])));
        return None;
    }
    let local = base.join(d.cwd.as_deref().unwrap_or(".")).join(script);
    let (found, via_path) = if local.is_file() {
        (Some(local), false)
    } else {
        let found = in_path(script);
        let via_path = found.is_some();
        (found, via_path)
    };
    let interpreter = match d.interpreter.as_deref() {
        Some("none") => None,
        Some(i) => Some(i.to_string()),
        None => default_interpreter(script, found.as_deref()).map(str::to_string),
    };
    let args = d.args.take().unwrap_or_default();
    // A command found in PATH runs as itself (the same program PM2 hands
    // to its interpreter).
    let via_path = via_path && d.interpreter.is_none();
    match &interpreter {
        Some(interpreter) if !via_path => {
            let mut all = std::mem::take(&mut d.interp_args);
            all.push(script.to_string());
            all.extend(args);
            d.keys.insert(1, ("script", T::String(interpreter.clone())));
            d.keys.insert(2, ("args", strings(all)));
        }
        _ => {
            if !d.interp_args.is_empty() {
                d.note(
                    "interpreter_args",
                    "left out, the script runs without an interpreter".into(),
                );
            }
            let direct = direct_script(script, d.cwd.as_deref(), base);
            d.keys.insert(1, ("script", T::String(direct)));
            if !args.is_empty() {
                d.keys.insert(2, ("args", strings(args)));
            }
        }
    }
    interpreter
}

/// PM2 appends two streams to one file when `out_file` and `error_file`
/// name it, which supd writes `log_file` (both streams); any other two of
/// the four file keys naming one file (which `check` refuses: two writers
/// would garble it) keep the first.
fn one_writer_per_file(d: &mut Draft) {
    const FILES: [&str; 4] = ["out_file", "error_file", "log_file", "pid_file"];
    let same = |a: &str, b: &str| {
        let plain = |p: &str| p.trim_start_matches("./").to_string();
        a != "/dev/null" && a != "NULL" && plain(a) == plain(b)
    };
    let path = |d: &Draft, key: &str| d.get(key).and_then(|v| v.as_str()).map(str::to_string);
    if let (Some(out), Some(err), None) = (
        path(d, "out_file"),
        path(d, "error_file"),
        path(d, "log_file"),
    ) && same(&out, &err)
    {
        d.keys
            .retain(|(k, _)| *k != "out_file" && *k != "error_file");
        d.keys.push(("log_file", T::String(out)));
        d.note("error_file", "names out_file's file: written log_file, one file with both streams, as PM2 appends them".into());
    }
    let mut kept: Vec<(&str, String)> = Vec::new();
    for key in FILES {
        let Some(p) = path(d, key) else { continue };
        if let Some((other, _)) = kept.iter().find(|(_, q)| same(&p, q)) {
            let why = format!("{p} is also {other}; left out (one writer per file)");
            d.keys.retain(|(k, _)| *k != key);
            d.skip(key, &why);
        } else {
            kept.push((key, p));
        }
    }
}

/// `watch` first: its tuning means nothing without it. Paths are relative
/// to the app's cwd.
fn watch_keys(d: &mut Draft, base: &Path) {
    let folder = base.join(d.cwd.as_deref().unwrap_or("."));
    let mut watching = false;
    for (key, k, v) in std::mem::take(&mut d.watch_keys) {
        let at = d.at(&k);
        let converted = match key {
            "watch" => watch(&v, &folder, &at, &mut d.notes),
            _ if !watching => Err("has no effect without watch".into()),
            "ignore_watch" => ignore_watch(&v, &at, &mut d.notes),
            _ => crate::values::duration(&v),
        };
        match converted {
            Ok(value) => {
                watching |= key == "watch";
                d.keys.push((key, value));
            }
            Err(e) => d.skip(&k, &e),
        }
    }
}

/// Cluster mode: the daemon binds `env.PORT` (PM2's `port` included) and
/// hands it to every instance; PM2's cluster module is not used. Without a
/// port, node itself has its port learned at its first `listen()`; several
/// instances of another program (`npm start`) would each bind the port
/// themselves, and all but one fail: that app cannot be imported.
fn cluster(d: &mut Draft) -> Result<(), String> {
    if d.get("exec_mode").is_none() {
        d.keys.push(("exec_mode", T::String("cluster".into())));
        d.note(
            "exec_mode",
            "cluster, as PM2 picks for a Node script with instances and no exec_mode".into(),
        );
    }
    if let Some(p) = d.env_port() {
        d.keys.push(("port", T::Integer(p.into())));
        d.note(
            "port",
            format!("set to {p} from env.PORT: in cluster mode the daemon binds it and shares it with every instance (see docs/cluster.md)"),
        );
        return Ok(());
    }
    let program = match d.get("script") {
        Some(T::String(s)) => s.clone(),
        _ => String::new(),
    };
    let several = !matches!(d.instances, Some(1) | None);
    if NodeProgram::of(&program) == Some(NodeProgram::Node) || !several {
        return Ok(());
    }
    Err(format!(
        "cluster mode with several instances of {program:?} and no port: each would bind the port itself and all but one fail (supd learns the port only of node itself); set port (or env.PORT) in the PM2 file, or exec_mode: \"fork\" for instances that do not share a port"
    ))
}

/// A script run directly: PM2 resolves it against `cwd`, supd against the
/// file's folder, so `cwd` is joined in; a bare name is a local file when
/// one exists, else a command looked up in PATH (as PM2 does).
fn direct_script(script: &str, cwd: Option<&str>, base: &Path) -> String {
    if script.starts_with('/') || script.starts_with("~/") {
        return script.to_string();
    }
    let local = base.join(cwd.unwrap_or(".")).join(script);
    if !script.contains('/') && !local.is_file() {
        return script.to_string();
    }
    let joined = match cwd {
        Some(c) => Path::new(c).join(script),
        None => Path::new(".").join(script),
    };
    let text = joined.to_string_lossy().into_owned();
    if text.starts_with('/') || text.starts_with("./") || text.starts_with("../") {
        text
    } else {
        format!("./{text}")
    }
}

/// A name with every character supd refuses replaced by `-`.
fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() || clean == "." || clean == ".." || clean == "all" {
        "app".to_string()
    } else {
        clean
    }
}
