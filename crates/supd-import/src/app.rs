//! One PM2 app object mapped to one `[[apps]]` table.

use std::path::Path;

use serde_json::{Map, Value};
use toml::Value as T;

/// The supd keys in the order they are printed.
use supd_config::APP_KEYS as ORDER;

/// PM2 keys supd does not have, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "watch_options",
        "not supported (supd's watcher takes no chokidar options; see docs/watch.md)",
    ),
    (
        "out_file",
        "supd writes logs to SUPD_HOME/logs (see docs/logs.md)",
    ),
    (
        "error_file",
        "supd writes logs to SUPD_HOME/logs (see docs/logs.md)",
    ),
    (
        "err_file",
        "supd writes logs to SUPD_HOME/logs (see docs/logs.md)",
    ),
    (
        "output",
        "supd writes logs to SUPD_HOME/logs (see docs/logs.md)",
    ),
    (
        "error",
        "supd writes logs to SUPD_HOME/logs (see docs/logs.md)",
    ),
    (
        "log_file",
        "supd writes logs to SUPD_HOME/logs (see docs/logs.md)",
    ),
    (
        "log",
        "supd writes logs to SUPD_HOME/logs (see docs/logs.md)",
    ),
    (
        "disable_logs",
        "not supported (supd always captures stdout and stderr; see docs/logs.md)",
    ),
    (
        "log_type",
        "not supported (logs are plain lines; `supctl logs --json` prints JSON)",
    ),
    (
        "time",
        "not supported (use log_date_format to prefix log lines with the time)",
    ),
    (
        "pid_file",
        "not supported (supd keeps pids in the daemon: supctl list --json)",
    ),
    (
        "source_map_support",
        "not supported (supd runs no Node wrapper; pass --enable-source-maps in node_args)",
    ),
    (
        "increment_var",
        "not supported (set port: the daemon hands one shared socket to every instance)",
    ),
    (
        "vizion",
        "not supported (supd does no version control metadata)",
    ),
    (
        "post_update",
        "not supported (supd has no pull/update of apps)",
    ),
    ("force", "not needed (supd starts an app once per name)"),
    (
        "treekill",
        "not needed (supd always signals the whole process group)",
    ),
    (
        "shutdown_with_message",
        "not supported (supd stops with kill_signal)",
    ),
    (
        "namespace",
        "not supported (supd has no namespaces; use --only a,b)",
    ),
    (
        "filter_env",
        "not supported (supd passes the environment supctl runs with, plus env)",
    ),
    (
        "append_env_to_name",
        "not supported (supd names are used as written)",
    ),
    (
        "autostart",
        "not supported (every app of the file starts; use --only a,b)",
    ),
    (
        "user",
        "not supported (supd runs apps as the daemon's user)",
    ),
    ("uid", "not supported (supd runs apps as the daemon's user)"),
    ("gid", "not supported (supd runs apps as the daemon's user)"),
    (
        "max_memory_restart_interval",
        "not needed (supd checks memory every second)",
    ),
    (
        "pmx",
        "not supported (supd has no PM2.io agent; see docs/monitoring.md)",
    ),
    (
        "automation",
        "not supported (supd has no PM2.io agent; see docs/monitoring.md)",
    ),
    (
        "trace",
        "not supported (supd has no PM2.io agent; see docs/monitoring.md)",
    ),
    (
        "disable_trace",
        "not supported (supd has no PM2.io agent; see docs/monitoring.md)",
    ),
    ("instance_id_env", "not supported"),
    (
        "kill_retry_time",
        "not supported (supd sends SIGKILL to the group after kill_timeout)",
    ),
    ("wait_ready_timeout", "not supported (use listen_timeout)"),
];

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
/// with a change). `None` when the app cannot be imported at all.
pub fn convert(
    app: &Map<String, Value>,
    index: usize,
    base: &Path,
    notes: &mut Vec<String>,
) -> Option<App> {
    let at = |k: &str| format!("apps[{index}].{k}");
    let mut skipped = Vec::new();
    let mut skip = |notes: &mut Vec<String>, k: &str, why: String| {
        notes.push(format!("{}: {why}", at(k)));
        skipped.push(format!("{k}: {why}"));
    };
    let mut keys: Vec<(&'static str, T)> = Vec::new();
    let mut envs: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut name = None;
    let mut script = None;
    let mut args = None;
    let mut interp_args: Vec<String> = Vec::new();
    let mut interpreter = None;
    let mut cwd = None;
    let mut cluster = false;
    // Read once `cwd` is known: watched paths are relative to it.
    let mut watch_keys: Vec<(&'static str, &Value)> = Vec::new();

    for (k, v) in app {
        let k = k.as_str();
        match k {
            "name" => match scalar(v) {
                Some(n) => name = Some(n),
                None => skip(notes, k, format!("expected a string, found {}", kind(v))),
            },
            "script" => match v.as_str() {
                Some(s) if !s.trim().is_empty() => script = Some(s.trim().to_string()),
                _ => skip(notes, k, format!("expected a string, found {}", kind(v))),
            },
            "args" => match words(v) {
                Ok(w) => args = Some(w),
                Err(e) => skip(notes, k, e),
            },
            "node_args" | "interpreter_args" => match words(v) {
                Ok(w) => interp_args.extend(w),
                Err(e) => skip(notes, k, e),
            },
            "interpreter" | "exec_interpreter" => match v.as_str() {
                Some(s) if !s.trim().is_empty() => interpreter = Some(s.trim().to_string()),
                _ => skip(notes, k, format!("expected a string, found {}", kind(v))),
            },
            "cwd" => match v.as_str() {
                Some(s) if !s.is_empty() => cwd = Some(s.to_string()),
                _ => skip(notes, k, format!("expected a path, found {}", kind(v))),
            },
            "exec_mode" => match v.as_str() {
                Some("cluster" | "cluster_mode") => {
                    cluster = true;
                    keys.push(("exec_mode", T::String("cluster".into())));
                }
                Some("fork" | "fork_mode") => keys.push(("exec_mode", T::String("fork".into()))),
                _ => skip(
                    notes,
                    k,
                    format!("{v} is not fork_mode or cluster_mode, not imported"),
                ),
            },
            "instances" => match instances(v) {
                Ok((value, note)) => {
                    if let Some(note) = note {
                        notes.push(format!("{}: {note}", at(k)));
                    }
                    keys.push(("instances", value));
                }
                Err(e) => skip(notes, k, e),
            },
            "wait_ready" | "autorestart" | "merge_logs" | "combine_logs" => match boolean(v) {
                // PM2's default, but written out it would turn off supd's
                // own default for Node apps with a port (online once they
                // listen), which is what PM2's `false` means in practice.
                Some(false) if k == "wait_ready" => skip(
                    notes,
                    k,
                    "false is PM2's default, not imported (a Node app with a port is online once it listens)".into(),
                ),
                Some(b) => {
                    let key = match k {
                        "wait_ready" => "wait_ready",
                        "autorestart" => "autorestart",
                        _ => "merge_logs",
                    };
                    if k == "combine_logs" {
                        notes.push(format!("{}: written as merge_logs (its PM2 alias)", at(k)));
                    }
                    keys.retain(|(have, _)| *have != key);
                    keys.push((key, T::Boolean(b)));
                }
                None => skip(
                    notes,
                    k,
                    format!("expected true or false, found {}", kind(v)),
                ),
            },
            "listen_timeout"
            | "kill_timeout"
            | "min_uptime"
            | "restart_delay"
            | "exp_backoff_restart_delay" => {
                let key = ORDER
                    .iter()
                    .find(|o| **o == k)
                    .copied()
                    .unwrap_or("min_uptime");
                match duration(v) {
                    Ok(T::Integer(0)) if k == "exp_backoff_restart_delay" => skip(
                        notes,
                        k,
                        "0 means off; supd turns the back-off off when the key is left out".into(),
                    ),
                    Ok(d) => keys.push((key, d)),
                    Err(e) => skip(notes, k, e),
                }
            }
            "kill_signal" => match v.as_str().map(supd_config::parse_signal) {
                Some(Ok(sig)) => keys.push(("kill_signal", T::String(sig))),
                Some(Err(e)) => skip(notes, k, e),
                None => skip(
                    notes,
                    k,
                    format!("expected a signal name, found {}", kind(v)),
                ),
            },
            "max_restarts" => match int(v) {
                Some(n) if n >= 0 => keys.push(("max_restarts", T::Integer(n))),
                _ => skip(notes, k, format!("expected an integer ≥ 0, found {v}")),
            },
            "stop_exit_codes" => {
                let list: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                let codes: Option<Vec<T>> = list
                    .iter()
                    .map(|c| int(c).filter(|n| (0..=255).contains(n)).map(T::Integer))
                    .collect();
                match codes {
                    Some(codes) => keys.push(("stop_exit_codes", T::Array(codes))),
                    None => skip(notes, k, format!("expected exit codes 0-255, found {v}")),
                }
            }
            "max_memory_restart" => match size(v) {
                Ok(s) => keys.push(("max_memory_restart", s)),
                Err(e) => skip(notes, k, e),
            },
            "cron_restart" | "cron" => match cron(v) {
                Ok((c, note)) => {
                    if let Some(note) = note {
                        notes.push(format!("{}: {note}", at(k)));
                    }
                    keys.push(("cron_restart", T::String(c)));
                }
                Err(e) => skip(notes, k, e),
            },
            "instance_var" => match v.as_str() {
                Some(s) if supd_config::valid_env_name(s) => {
                    keys.push(("instance_var", T::String(s.into())));
                }
                _ => skip(notes, k, format!("{v} is not a valid variable name")),
            },
            "log_date_format" => match v.as_str() {
                Some(f) => {
                    let (converted, lost) = super::date_format::convert(f);
                    if converted.trim().is_empty() {
                        skip(notes, k, format!("{f:?} has no token supd can convert"));
                        continue;
                    }
                    if !lost.is_empty() {
                        notes.push(format!(
                            "{}: {} cannot be converted to a chrono strftime format, left out: {converted:?}",
                            at(k),
                            lost.join(", ")
                        ));
                    }
                    keys.push(("log_date_format", T::String(converted)));
                }
                None => skip(notes, k, format!("expected a string, found {}", kind(v))),
            },
            "watch" => watch_keys.insert(0, ("watch", v)),
            "ignore_watch" => watch_keys.push(("ignore_watch", v)),
            "watch_delay" => watch_keys.push(("watch_delay", v)),
            "env" => envs.insert(0, ("env".into(), env(v, &at(k), notes))),
            _ if k.starts_with("env_") && k.len() > 4 => {
                if v.is_object() {
                    envs.push((k.to_string(), env(v, &at(k), notes)));
                } else {
                    skip(
                        notes,
                        k,
                        format!("expected a table of variables, found {}", kind(v)),
                    );
                }
            }
            _ => {
                if let Some((_, why)) = UNSUPPORTED.iter().find(|(u, _)| *u == k) {
                    skip(notes, k, (*why).to_string());
                } else {
                    skip(notes, k, "not a PM2 key supd knows, not imported".into());
                }
            }
        }
    }

    let Some(script) = script else {
        notes.push(format!("apps[{index}]: no script, app skipped"));
        return None;
    };
    let name = match name {
        Some(n) if supd_config::valid_name(&n) && n != "all" => n,
        Some(n) => {
            let clean = sanitize(&n);
            notes.push(format!(
                "{}: {n:?} has characters supd refuses ([A-Za-z0-9._-] only); written \"{clean}\"",
                at("name")
            ));
            clean
        }
        None => {
            let stem = Path::new(&script)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let clean = sanitize(&stem);
            notes.push(format!(
                "{}: not set; \"{clean}\" from the script, as PM2 does",
                at("name")
            ));
            clean
        }
    };
    keys.insert(0, ("name", T::String(name.clone())));

    // script and args: supd runs the program itself, with no interpreter.
    let interpreter = match interpreter.as_deref() {
        Some("none") => None,
        Some(i) => Some(i.to_string()),
        None => default_interpreter(&script).map(str::to_string),
    };
    let args = args.unwrap_or_default();
    match interpreter {
        Some(interpreter) => {
            let mut all = interp_args;
            all.push(script);
            all.extend(args);
            keys.insert(1, ("script", T::String(interpreter)));
            keys.insert(2, ("args", strings(all)));
        }
        None => {
            if !interp_args.is_empty() {
                notes.push(format!(
                    "{}: left out, the script runs without an interpreter",
                    at("interpreter_args")
                ));
            }
            keys.insert(
                1,
                (
                    "script",
                    T::String(direct_script(&script, cwd.as_deref(), base)),
                ),
            );
            if !args.is_empty() {
                keys.insert(2, ("args", strings(args)));
            }
        }
    }
    // `watch` comes first: its tuning means nothing without it.
    let folder = base.join(cwd.as_deref().unwrap_or("."));
    let mut watching = false;
    for (k, v) in watch_keys {
        let converted = match k {
            "watch" => watch(v, &folder, &at(k), notes),
            _ if !watching => Err("has no effect without watch".into()),
            "ignore_watch" => ignore_watch(v, &at(k), notes),
            _ => duration(v),
        };
        match converted {
            Ok(value) => {
                watching |= k == "watch";
                keys.push((k, value));
            }
            Err(e) => skip(notes, k, e),
        }
    }
    if let Some(cwd) = cwd {
        keys.push(("cwd", T::String(cwd)));
    }

    // Cluster mode: supd shares a daemon-owned socket instead of Node's cluster module.
    if cluster {
        let port = envs
            .iter()
            .find(|(t, _)| t == "env")
            .and_then(|(_, vars)| vars.iter().find(|(k, _)| k == "PORT"))
            .and_then(|(_, v)| v.trim().parse::<u16>().ok())
            .filter(|p| *p > 0);
        match port {
            Some(p) => {
                keys.push(("port", T::Integer(p.into())));
                notes.push(format!(
                    "{}: set to {p} from env.PORT: in cluster mode the daemon binds it and hands it to every instance as fd 3; a Node app must listen({{fd: 3}}) when LISTEN_FDS is set (see docs/coming-from-pm2.md)",
                    at("port")
                ));
            }
            None => notes.push(format!(
                "{}: cluster mode without a port: PM2's cluster module is not used, so set port and listen({{fd: 3}}) when LISTEN_FDS is set, or each instance binds on its own (see docs/coming-from-pm2.md)",
                at("exec_mode")
            )),
        }
    }
    Some(App {
        name,
        keys,
        envs,
        skipped,
    })
}

/// The interpreter PM2 picks from the script's extension.
fn default_interpreter(script: &str) -> Option<&'static str> {
    let ext = Path::new(script).extension()?.to_str()?;
    Some(match ext {
        "js" | "cjs" | "mjs" => "node",
        "py" => "python3",
        "sh" => "bash",
        "rb" => "ruby",
        "php" => "php",
        "pl" => "perl",
        _ => return None,
    })
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

/// A TOML array of strings.
fn strings(words: Vec<String>) -> T {
    T::Array(words.into_iter().map(T::String).collect())
}

/// `args`-like values: an array (numbers and booleans as text) or one string
/// split like a shell.
fn words(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => shlex::split(s).ok_or_else(|| format!("unbalanced quotes in {s:?}")),
        Value::Array(a) => a
            .iter()
            .map(|w| scalar(w).ok_or_else(|| format!("expected strings, found {}", kind(w))))
            .collect(),
        other => scalar(other)
            .map(|s| vec![s])
            .ok_or_else(|| format!("expected a string or an array, found {}", kind(other))),
    }
}

/// A string, number or boolean as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What kind of JSON value this is, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A boolean, also written `"true"` / `"false"`.
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// An integer, also written as a string of digits.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `instances`: n, `"max"`, -1, `"4"`; PM2's 0 means max.
fn instances(v: &Value) -> Result<(T, Option<String>), String> {
    if let Some(s) = v.as_str()
        && s.trim().eq_ignore_ascii_case("max")
    {
        return Ok((T::String("max".into()), None));
    }
    match int(v) {
        // More would be refused by `supctl check`.
        Some(n) if n > i64::from(supd_config::MAX_INSTANCES) => Err(format!(
            "{n} is too many; at most {} instances per app, not imported",
            supd_config::MAX_INSTANCES
        )),
        Some(n) if n > 0 => Ok((T::Integer(n), None)),
        Some(0) => Ok((
            T::String("max".into()),
            Some("0 means one per core in PM2; written \"max\"".into()),
        )),
        Some(-1) => Ok((T::Integer(-1), None)),
        Some(n) => Ok((
            T::Integer(-1),
            Some(format!(
                "{n} (cores minus {}) is not supported; written -1 (cores - 1)",
                -n
            )),
        )),
        None => Err(format!("expected a number, \"max\" or -1, found {v}")),
    }
}

/// A duration: milliseconds, or a string with a unit that supd reads.
fn duration(v: &Value) -> Result<T, String> {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(ms), _) => Ok(T::Integer(ms as i64)),
            (None, Some(f)) if f >= 0.0 => Ok(T::Integer(f.round() as i64)),
            _ => Err(format!("{n} is not a duration")),
        },
        Value::String(s) => {
            let s = s.trim();
            match supd_config::parse_duration(s) {
                Ok(_) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(T::Integer(
                    s.parse().map_err(|_| format!("{s} is too large"))?,
                )),
                Ok(_) => Ok(T::String(s.to_string())),
                Err(e) => Err(format!("{s:?}: {e}")),
            }
        }
        other => Err(format!("expected a duration, found {}", kind(other))),
    }
}

/// `watch`: `true`, `false`, or paths relative to the app's cwd (`folder`,
/// where they must exist for supd); missing paths are left out with a note.
fn watch(v: &Value, folder: &Path, at: &str, notes: &mut Vec<String>) -> Result<T, String> {
    if let Some(on) = boolean(v) {
        return Ok(T::Boolean(on));
    }
    match v {
        Value::Array(a) if a.is_empty() => {
            notes.push(format!(
                "{at}: [] watches the app's cwd in PM2; written true"
            ));
            Ok(T::Boolean(true))
        }
        Value::Array(_) | Value::String(_) => kept_strings(
            v,
            at,
            notes,
            "none of its paths can be watched",
            |path| match path.as_str() {
                Some(p) if !p.is_empty() && folder.join(p).exists() => Ok(p.into()),
                Some(p) => Err(format!(
                    "{p:?} does not exist in {} (supd watches only paths that exist)",
                    folder.display()
                )),
                None => Err(format!("expected a path, found {}", kind(path))),
            },
        ),
        other => Err(format!(
            "expected true, false or paths, found {}",
            kind(other)
        )),
    }
}

/// `ignore_watch`: glob patterns (one, or an array); a regular expression
/// (which a JavaScript file can hold, but reaches us as `{}`) or an invalid
/// glob is left out with a note.
fn ignore_watch(v: &Value, at: &str, notes: &mut Vec<String>) -> Result<T, String> {
    kept_strings(
        v,
        at,
        notes,
        "no pattern supd can read",
        |pattern| match pattern.as_str() {
            Some(p) => supd_config::check_watch_pattern(p).map(|()| p.into()),
            None => Err(format!(
                "{} cannot be imported (a regular expression?); write a glob such as \"*.log\"",
                kind(pattern)
            )),
        },
    )
}

/// The items of an array (or one value) that `keep` turns into strings,
/// as a TOML array; each other one is left out with a note at `at[i]`.
/// `none` is the error when nothing is kept.
fn kept_strings(
    v: &Value,
    at: &str,
    notes: &mut Vec<String>,
    none: &str,
    keep: impl Fn(&Value) -> Result<String, String>,
) -> Result<T, String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut kept = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match keep(item) {
            Ok(text) => kept.push(T::String(text)),
            Err(e) => notes.push(format!("{at}[{i}]: {e}, left out")),
        }
    }
    if kept.is_empty() {
        Err(none.into())
    } else {
        Ok(T::Array(kept))
    }
}

/// A size: bytes, or `"150M"`-like strings.
fn size(v: &Value) -> Result<T, String> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(b) if b > 0 => Ok(T::Integer(b as i64)),
            _ => Err(format!("{n} is not a size in bytes > 0")),
        },
        Value::String(s) => {
            let s = s.trim();
            match supd_config::parse_size(s) {
                Ok(0) => Err("0 is not a memory limit".into()),
                Ok(_) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(T::Integer(
                    s.parse().map_err(|_| format!("{s} is too large"))?,
                )),
                Ok(_) => Ok(T::String(s.to_string())),
                Err(e) => Err(format!("{s:?}: {e}")),
            }
        }
        other => Err(format!("expected a size, found {}", kind(other))),
    }
}

/// A cron expression supd accepts; PM2 also takes a seconds field, which
/// supd does not.
fn cron(v: &Value) -> Result<(String, Option<String>), String> {
    let Some(s) = v.as_str() else {
        return Err(format!("expected a cron expression, found {}", kind(v)));
    };
    let fields: Vec<&str> = s.split_whitespace().collect();
    let (expr, note) = match fields.len() {
        5 => (fields.join(" "), None),
        1 if s.trim().starts_with('@') => (s.trim().to_string(), None),
        6 if fields[0] == "0" => (
            fields[1..].join(" "),
            Some("seconds field 0 dropped (supd reads 5-field cron expressions)".into()),
        ),
        6 => {
            return Err(format!(
                "{s:?} restarts at a given second; supd reads 5-field cron expressions (minute precision)"
            ));
        }
        _ => return Err(format!("{s:?} is not a 5-field cron expression")),
    };
    // Five fields are not yet a valid expression (fuzzing found `0 3 * . *`
    // imported as is, which `check` then refused).
    supd_config::check_cron(&expr)?;
    Ok((expr, note))
}

/// An env table: values as text; names supd refuses are left out.
fn env(v: &Value, at: &str, notes: &mut Vec<String>) -> Vec<(String, String)> {
    let Some(map) = v.as_object() else {
        notes.push(format!(
            "{at}: expected a table of variables, found {}",
            kind(v)
        ));
        return Vec::new();
    };
    let mut vars = Vec::new();
    for (k, v) in map {
        if !supd_config::valid_env_name(k) {
            notes.push(format!(
                "{at}.{k}: not a valid variable name ([A-Za-z_][A-Za-z0-9_]*), left out"
            ));
            continue;
        }
        match v {
            Value::Null => notes.push(format!("{at}.{k}: null, left out")),
            Value::Array(_) | Value::Object(_) => {
                notes.push(format!("{at}.{k}: {} written as its JSON text", kind(v)));
                vars.push((k.clone(), v.to_string()));
            }
            other => vars.push((k.clone(), scalar(other).unwrap_or_default())),
        }
    }
    vars
}
