//! The small functions of [`crate::keys`]' table, one per PM2 key (with its
//! aliases) that supd maps: each reads the value into the [`Draft`], or
//! says why it cannot.

use serde_json::Value;
use toml::Value as T;

use crate::draft::Draft;
use crate::values::{boolean, cron, duration, instances, int, kind, scalar, words};

/// A boolean, or the reason it is not one.
pub fn bool_of(_: &str, v: &Value) -> Result<bool, String> {
    boolean(v).ok_or_else(|| format!("expected true or false, found {}", kind(v)))
}

/// A non-empty string, or the reason.
pub fn text(v: &Value, what: &str) -> Result<String, String> {
    match v.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(format!("expected {what}, found {}", kind(v))),
    }
}

/// `script` and its aliases: the program, resolved in [`crate::app`].
pub fn script(d: &mut Draft, k: &str, v: &Value) -> Result<(), String> {
    let s = text(v, "a string")?;
    // `script` wins over its aliases, as in PM2 (`cmd` only when no script).
    if k == "script" || d.script.is_none() {
        d.script = Some(s);
    }
    Ok(())
}

/// `name`, sanitized in [`crate::app`].
pub fn name(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    d.name = Some(scalar(v).ok_or_else(|| format!("expected a string, found {}", kind(v)))?);
    Ok(())
}

/// `cwd`, as written.
pub fn cwd(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if !s.is_empty() => {
            d.cwd = Some(s.to_string());
            Ok(())
        }
        _ => Err(format!("expected a path, found {}", kind(v))),
    }
}

/// `args`: an array, or a string split like a shell.
pub fn args(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    d.args = Some(words(v)?);
    Ok(())
}

/// `exec_interpreter` / `interpreter`.
pub fn interpreter(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    d.interpreter = Some(text(v, "a string")?);
    Ok(())
}

/// `node_args` and its aliases: arguments before the script.
pub fn node_args(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    d.interp_args.extend(words(v)?);
    Ok(())
}

/// `out_file`, `error_file`, `log_file`, `pid_file` (as `supd_key`): a path,
/// kept as written (supd reads it relative to the app's cwd, as PM2 does).
pub fn file(d: &mut Draft, _: &str, v: &Value, supd_key: &'static str) -> Result<(), String> {
    match v {
        Value::Bool(true) if supd_key == "log_file" => Err(
            "true (PM2's default path ~/.pm2/logs/NAME.log) has no supd equivalent; write a path"
                .into(),
        ),
        Value::Bool(false) => Err("false is PM2's default (no such file)".into()),
        _ => d.set(supd_key, T::String(text(v, "a path")?)),
    }
}

/// `log_date_format`: moment.js tokens as a chrono format.
pub fn log_date_format(d: &mut Draft, k: &str, v: &Value) -> Result<(), String> {
    let f = v
        .as_str()
        .ok_or_else(|| format!("expected a string, found {}", kind(v)))?;
    let (converted, lost) = crate::date_format::convert(f);
    if converted.trim().is_empty() {
        return Err(format!("{f:?} has no token supd can convert"));
    }
    if !lost.is_empty() {
        d.note(
            k,
            format!(
                "{} cannot be converted to a chrono strftime format, left out: {converted:?}",
                lost.join(", ")
            ),
        );
    }
    d.set("log_date_format", T::String(converted))
}

/// `time: true`: PM2 sets `log_date_format` to `YYYY-MM-DDTHH:mm:ss`,
/// over any format written (`Common.verifyConfs`).
pub fn time(d: &mut Draft, k: &str, v: &Value) -> Result<(), String> {
    d.time = bool_of(k, v)?;
    Ok(())
}

/// `exp_backoff_restart_delay`.
pub fn exp_backoff(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    match duration(v)? {
        T::Integer(0) => {
            Err("0 means off; supd turns the back-off off when the key is left out".into())
        }
        value => d.set("exp_backoff_restart_delay", value),
    }
}

/// `wait_ready: false` is PM2's default: written out, it would turn off
/// supd's wait for a Node app with a port to listen.
pub fn wait_ready(d: &mut Draft, k: &str, v: &Value) -> Result<(), String> {
    if !bool_of(k, v)? {
        return Err("false is PM2's default, not imported (a Node app with a port is online once it listens)".into());
    }
    d.set("wait_ready", T::Boolean(true))
}

/// `instances`, kept for PM2's cluster rule too.
pub fn instances_key(d: &mut Draft, k: &str, v: &Value) -> Result<(), String> {
    let (value, count, note) = instances(v)?;
    if let Some(note) = note {
        d.note(k, note);
    }
    d.instances = Some(count);
    d.set("instances", value)
}

/// `cron_restart` / `cron`.
pub fn cron_restart(d: &mut Draft, k: &str, v: &Value) -> Result<(), String> {
    let (expr, note) = cron(v)?;
    if let Some(note) = note {
        d.note(k, note);
    }
    d.set("cron_restart", T::String(expr))
}

/// `max_restarts`: an integer ≥ 0.
pub fn max_restarts(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    match int(v) {
        Some(n) if n >= 0 => d.set("max_restarts", T::Integer(n)),
        _ => Err(format!("expected an integer ≥ 0, found {v}")),
    }
}

/// `execute_command: true` forces fork mode in PM2 (`verifyConfs`).
pub fn execute_command(d: &mut Draft, k: &str, v: &Value) -> Result<(), String> {
    if bool_of(k, v)? {
        d.cluster = Some(false);
        return d.set("exec_mode", T::String("fork".into()));
    }
    Err("false changes nothing".into())
}

/// `exec_mode`: either spelling of fork or cluster.
pub fn exec_mode(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    let cluster = match v.as_str() {
        Some("cluster" | "cluster_mode") => true,
        Some("fork" | "fork_mode") => false,
        _ => {
            return Err(format!(
                "{v} is not fork_mode or cluster_mode, not imported"
            ));
        }
    };
    d.cluster = Some(cluster);
    d.set(
        "exec_mode",
        T::String(if cluster { "cluster" } else { "fork" }.into()),
    )
}

/// `instance_var`: a variable name.
pub fn instance_var(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if supd_config::valid_env_name(s) => d.set("instance_var", T::String(s.into())),
        _ => Err(format!("{v} is not a valid variable name")),
    }
}

/// PM2's `port` is a shortcut for `env.PORT`.
pub fn port(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    match int(v) {
        Some(p) if (1..=65535).contains(&p) => {
            d.port = Some(p.to_string());
            Ok(())
        }
        _ => Err(format!("expected a port 1-65535, found {v}")),
    }
}

/// `kill_signal`: a signal supd knows.
pub fn kill_signal(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    let name = v
        .as_str()
        .ok_or_else(|| format!("expected a signal name, found {}", kind(v)))?;
    d.set("kill_signal", T::String(supd_config::parse_signal(name)?))
}

/// `stop_exit_codes`: one code or a list, 0-255.
pub fn stop_exit_codes(d: &mut Draft, _: &str, v: &Value) -> Result<(), String> {
    let list: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let codes: Option<Vec<T>> = list
        .iter()
        .map(|c| int(c).filter(|n| (0..=255).contains(n)).map(T::Integer))
        .collect();
    d.set(
        "stop_exit_codes",
        T::Array(codes.ok_or_else(|| format!("expected exit codes 0-255, found {v}"))?),
    )
}
