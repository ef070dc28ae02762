//! PM2 ecosystem files (`.js`, `.cjs`, `.mjs`, `.json`, `.yaml`, `.yml`)
//! translated into the equivalent `ecosystem.toml`, for `supctl import`.
//!
//! The file is read into a JSON value ([`read`]; JavaScript through
//! `node`), each app is mapped key by key ([`convert`]), and every key that
//! could not be mapped becomes a note with the reason. The TOML passes
//! `supctl check`. A library of its own so that the fuzz target of
//! `tests/fuzz` reaches the same code the CLI runs.

mod app;
mod convert;
mod date_format;
mod draft;
mod keys;
mod read;
mod script;
mod values;

use std::path::Path;

use anyhow::bail;
use serde_json::Value;

pub use read::{parse_text, read};

/// Reads the PM2 file `file` and converts it: the TOML text and the notes,
/// as `supctl import` prints them. Every command that takes a PM2 file
/// goes through here, so they all mean the same thing by it.
pub fn load(file: &Path) -> anyhow::Result<(String, Vec<String>)> {
    let value = read(file)?;
    let base = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    convert(&value, &file.display().to_string(), base)
}

/// Whether `target` names an ecosystem file rather than an app or a
/// program: `*.toml`, or a PM2 file by PM2's own rule ([`is_pm2_file`]).
pub fn is_ecosystem_file(target: &str) -> bool {
    target.ends_with(".toml") || is_pm2_file(target)
}

/// Loads the ecosystem file `file`: TOML as it is, anything else as a PM2
/// file converted by [`load`], whose notes come back beside the apps (the
/// caller prints them on stderr, as `import` does). `supctl start FILE`
/// and `supd run FILE` both read files through here.
pub fn ecosystem(
    file: &Path,
    opts: &supd_config::LoadOptions,
) -> anyhow::Result<(supd_config::Ecosystem, Vec<String>)> {
    if file.extension().is_some_and(|e| e == "toml") {
        return Ok((supd_config::load(file, opts)?, Vec::new()));
    }
    let (toml, notes) = load(file)?;
    let eco = supd_config::load_str(&toml, file, opts).map_err(|e| {
        anyhow::anyhow!(
            "{} (as imported: run supctl import {0}): {e}",
            file.display()
        )
    })?;
    Ok((eco, notes))
}

/// Whether `file` is a PM2 ecosystem file by its name, as PM2's
/// `Common.isConfigFile` decides: `.json`, `.yml`, `.yaml`, `.config.js`,
/// `.config.cjs`, `.config.mjs` (a plain `app.js` is a program to run).
pub fn is_pm2_file(file: &str) -> bool {
    [
        ".json",
        ".yml",
        ".yaml",
        ".config.js",
        ".config.cjs",
        ".config.mjs",
    ]
    .iter()
    .any(|ext| file.ends_with(ext))
}

/// The TOML text for a PM2 config already read into `value`, and the notes
/// (one line per key not mapped, or mapped with a change worth knowing).
/// `label` is the file as the user wrote it; `base` its folder.
pub fn convert(value: &Value, label: &str, base: &Path) -> anyhow::Result<(String, Vec<String>)> {
    let mut notes = Vec::new();
    let apps: Vec<&Value> = match value {
        Value::Array(apps) => apps.iter().collect(),
        Value::Object(top) if top.contains_key("apps") => {
            for key in top.keys().filter(|k| *k != "apps") {
                notes.push(match key.as_str() {
                    "deploy" => format!(
                        "{key}: not supported (supd has no deploy command; use your CI or git to ship code)"
                    ),
                    _ => format!("{key}: not an ecosystem key supd knows, not imported"),
                });
            }
            match &top["apps"] {
                Value::Array(apps) => apps.iter().collect(),
                app @ Value::Object(_) => vec![app],
                _ => bail!("{label}: \"apps\" is not an array of apps"),
            }
        }
        Value::Object(top) if top.contains_key("script") => vec![value],
        _ => bail!(
            "{label}: no apps found (expected {{ apps: [ ... ] }} or an array of apps, as PM2 reads)"
        ),
    };
    let mut out = format!("# imported from {label} by supctl import\n");
    let mut names = Vec::new();
    let mut ports: Vec<(i64, String)> = Vec::new();
    for (index, app) in apps.iter().enumerate() {
        let Some(app) = app.as_object() else {
            bail!("{label}: apps[{index}]: not an app (an object), cannot be imported");
        };
        let mut converted = app::convert(app, index, base, &mut notes).map_err(|why| {
            let named = app
                .get("name")
                .and_then(Value::as_str)
                .map(|n| format!(" ({n:?})"))
                .unwrap_or_default();
            anyhow::anyhow!(
                "{label}: apps[{index}]{named} cannot be imported: {}",
                app::one_line(&why)
            )
        })?;
        // supd refuses a repeated name; PM2 would run both under one name.
        if names.contains(&converted.name) {
            let mut n = 2;
            while names.contains(&format!("{}-{n}", converted.name)) {
                n += 1;
            }
            let renamed = format!("{}-{n}", converted.name);
            notes.push(format!(
                "apps[{index}].name: \"{}\" is used by an earlier app; renamed \"{renamed}\" (supd names are unique)",
                converted.name
            ));
            converted.rename(renamed);
        }
        // supd binds each port once; PM2 would let the second app fail.
        if let Some(port) = converted.port() {
            if let Some(first) = ports.iter().find(|(p, _)| *p == port).map(|(_, n)| n) {
                notes.push(format!(
                    "apps[{index}].port: {port} is used by the earlier app \"{first}\"; left out (supd binds each port once)"
                ));
                converted.drop_port();
            } else {
                ports.push((port, converted.name.clone()));
            }
        }
        names.push(converted.name.clone());
        out.push('\n');
        out.push_str(&converted.to_toml());
    }
    if names.is_empty() {
        bail!("{label}: no apps in the file");
    }
    Ok((out, notes.iter().map(|n| app::one_line(n)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Converts `json`; the TOML must pass the loader, as `supctl check`.
    fn checked(json: &str) -> (String, Vec<String>) {
        let value = serde_json::from_str(json).expect("JSON");
        let (toml, notes) = convert(&value, "pm2.json", Path::new("/srv")).expect("converted");
        let file = Path::new("/srv/ecosystem.toml");
        if let Err(e) = supd_config::load_str(&toml, file, &supd_config::LoadOptions::default()) {
            panic!("the imported file fails check:\n{e}\n---\n{toml}");
        }
        (toml, notes)
    }

    /// Found by the `import` fuzz target: five fields are not yet a cron
    /// expression, and `0 3 * . *` was imported as is.
    #[test]
    fn an_invalid_cron_expression_is_left_out() {
        let (toml, notes) =
            checked(r#"{"apps": [{"name": "w", "script": "w", "cron_restart": "0 3 * . *"}]}"#);
        assert!(!toml.contains("\ncron_restart"), "{toml}");
        assert!(
            notes.iter().any(|n| n.starts_with("apps[0].cron_restart: ")
                && n.contains("not a valid 5-field cron expression")),
            "{notes:?}"
        );
        let (toml, _) =
            checked(r#"{"apps": [{"name": "w", "script": "w", "cron_restart": "0 0 3 * * *"}]}"#);
        assert!(toml.contains("\ncron_restart = \"0 3 * * *\"\n"), "{toml}");
    }

    /// An instance count `supctl check` refuses is left out, as the cron
    /// expression and the port above are.
    #[test]
    fn too_many_instances_are_left_out() {
        let (toml, notes) =
            checked(r#"{"apps": [{"name": "w", "script": "w", "instances": 5000}]}"#);
        assert!(!toml.contains("\ninstances"), "{toml}");
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("apps[0].instances: 5000 is too many")),
            "{notes:?}"
        );
        let (toml, _) = checked(r#"{"apps": [{"name": "w", "script": "w", "instances": 1024}]}"#);
        assert!(toml.contains("\ninstances = 1024\n"), "{toml}");
    }

    /// `wait_ready: false` is PM2's default: written out, it would turn off
    /// supd's wait for a Node app with a port to listen.
    #[test]
    fn wait_ready_false_is_left_out_and_true_kept() {
        let (toml, notes) =
            checked(r#"{"apps": [{"name": "w", "script": "w.js", "wait_ready": false}]}"#);
        assert!(!toml.contains("\nwait_ready"), "{toml}");
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("apps[0].wait_ready: false is PM2's default")),
            "{notes:?}"
        );
        let (toml, _) =
            checked(r#"{"apps": [{"name": "w", "script": "w.js", "wait_ready": true}]}"#);
        assert!(toml.contains("\nwait_ready = true\n"), "{toml}");
    }

    /// Found by the `import` fuzz target: a key with a control character
    /// was written raw into a TOML comment (invalid TOML; a newline in it
    /// would have added a line of its own to the file).
    #[test]
    fn keys_with_control_characters_stay_in_their_comment() {
        let (toml, notes) =
            checked(r#"{"apps": [{"name": "w", "script": "w", "x\u001b\nport = 1": 1}]}"#);
        assert!(
            toml.contains("# not imported: x\\u{1b}\\nport = 1: not a PM2 key"),
            "{toml}"
        );
        assert!(!toml.contains("\nport = 1"), "{toml}");
        assert!(notes.iter().all(|n| !n.contains('\n')), "{notes:?}");
    }

    /// Found by the `import` fuzz target: two cluster apps with the same
    /// `env.PORT` were both given that port, which `check` refuses.
    #[test]
    fn a_port_already_taken_is_left_out() {
        let app = |name: &str| {
            format!(
                r#"{{"name": "{name}", "script": "s", "exec_mode": "cluster", "env": {{"PORT": 3100}}}}"#
            )
        };
        let (toml, notes) = checked(&format!(r#"{{"apps": [{}, {}]}}"#, app("a"), app("b")));
        assert_eq!(toml.matches("\nport = 3100\n").count(), 1, "{toml}");
        assert!(
            notes.contains(&"apps[1].port: 3100 is used by the earlier app \"a\"; left out (supd binds each port once)".to_string()),
            "{notes:?}"
        );
    }
}
