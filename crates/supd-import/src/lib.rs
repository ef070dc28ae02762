//! `supctl import`: a PM2 ecosystem file (`.js`, `.cjs`, `.mjs`, `.json`,
//! `.yaml`, `.yml`) printed as the equivalent `ecosystem.toml`.
//!
//! The file is read into a JSON value (JavaScript through `node`), each app is
//! mapped key by key, and every key that could not be mapped is reported on
//! stderr with the reason. The printed file passes `supctl check`.

mod app;
mod date_format;
mod read;

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::Value;

/// Runs `supctl import FILE`.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let value = read::read(file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let (toml, notes) = convert(&value, &file.display().to_string(), base)?;
    for note in &notes {
        eprintln!("{note}");
    }
    print!("{toml}");
    Ok(ExitCode::SUCCESS)
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
    for (index, app) in apps.iter().enumerate() {
        let Some(app) = app.as_object() else {
            notes.push(format!("apps[{index}]: not an object, skipped"));
            continue;
        };
        let Some(mut converted) = app::convert(app, index, base, &mut notes) else {
            continue;
        };
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
        names.push(converted.name.clone());
        out.push('\n');
        out.push_str(&converted.to_toml());
    }
    if names.is_empty() {
        bail!("{label}: no app could be imported (each needs at least a script)");
    }
    Ok((out, notes))
}
