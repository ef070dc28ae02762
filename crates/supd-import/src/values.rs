//! Readers for the kinds of values PM2 files hold (strings, numbers written
//! as text, durations, sizes, cron expressions, env tables, watch paths),
//! each turned into the TOML value supd reads or a reason it cannot be.

use std::path::Path;

use serde_json::Value;
use toml::Value as T;

/// A TOML array of strings.
pub fn strings(words: Vec<String>) -> T {
    T::Array(words.into_iter().map(T::String).collect())
}

/// `args`-like values: an array (numbers and booleans as text) or one string
/// split like a shell.
pub fn words(v: &Value) -> Result<Vec<String>, String> {
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
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What kind of JSON value this is, for messages.
pub fn kind(v: &Value) -> &'static str {
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
pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// An integer, also written as a string of digits.
pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `instances`: n, `"max"`, -1, `"4"`; PM2's 0 means max. Also the count
/// as PM2 reads it ("max" is 0), for its cluster rule.
pub fn instances(v: &Value) -> Result<(T, i64, Option<String>), String> {
    if let Some(s) = v.as_str()
        && s.trim().eq_ignore_ascii_case("max")
    {
        return Ok((T::String("max".into()), 0, None));
    }
    match int(v) {
        // More would be refused by `supctl check`.
        Some(n) if n > i64::from(supd_config::MAX_INSTANCES) => Err(format!(
            "{n} is too many; at most {} instances per app, not imported",
            supd_config::MAX_INSTANCES
        )),
        Some(n) if n > 0 => Ok((T::Integer(n), n, None)),
        Some(0) => Ok((
            T::String("max".into()),
            0,
            Some("0 means one per core in PM2; written \"max\"".into()),
        )),
        Some(-1) => Ok((T::Integer(-1), -1, None)),
        Some(n) => Ok((
            T::Integer(-1),
            n,
            Some(format!(
                "{n} (cores minus {}) is not supported; written -1 (cores - 1)",
                -n
            )),
        )),
        None => Err(format!("expected a number, \"max\" or -1, found {v}")),
    }
}

/// A duration: milliseconds, or a string with a unit that supd reads.
pub fn duration(v: &Value) -> Result<T, String> {
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
pub fn watch(v: &Value, folder: &Path, at: &str, notes: &mut Vec<String>) -> Result<T, String> {
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
pub fn ignore_watch(v: &Value, at: &str, notes: &mut Vec<String>) -> Result<T, String> {
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
pub fn kept_strings(
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
pub fn size(v: &Value) -> Result<T, String> {
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
pub fn cron(v: &Value) -> Result<(String, Option<String>), String> {
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
pub fn env(v: &Value, at: &str, notes: &mut Vec<String>) -> Vec<(String, String)> {
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
