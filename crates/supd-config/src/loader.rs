//! Loading a whole file: read, parse, check the top level, read each app,
//! check what apps must not share (names, ports), resolve, apply `--only`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::diag::{Diag, position};
use crate::raw::{DAEMON_KEYS, RawApp, kind, read_daemon, suggest};
use crate::resolve::{Context, resolve};
use crate::{ConfigError, DaemonConfig, Ecosystem, LoadOptions, Problem, values};

/// Reads, validates and resolves the ecosystem file at `path`.
pub(crate) fn load(path: &Path, opts: &LoadOptions) -> Result<Ecosystem, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    load_str(&src, path, opts)
}

/// Validates and resolves `src`, the text of the ecosystem file at `path`.
pub(crate) fn load_str(
    src: &str,
    path: &Path,
    opts: &LoadOptions,
) -> Result<Ecosystem, ConfigError> {
    let mut diag = Diag::new(path, src);
    let doc = match DeTable::parse(src) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let mut message = format!("invalid TOML: {}", e.message().trim());
            // "duplicate key" alone does not say which (a second [daemon]…).
            if message.ends_with("duplicate key")
                && let Some(key) = src.get(span.clone()).filter(|k| !k.is_empty())
            {
                message.push_str(&format!(" {key:?}"));
            }
            diag.at(span, message);
            return Err(diag.into_error());
        }
    };

    let (raws, daemon) = read_top_level(doc.get_ref(), &mut diag);
    check_unique(&raws, src, &mut diag);

    let file = absolute_file(path);
    let dir = file.parent().unwrap_or(Path::new("/"));
    let ctx = Context {
        dir,
        env: opts.env.as_deref(),
        cores: values::cores(),
    };
    let names: Vec<String> = raws
        .iter()
        .filter_map(|raw| raw.name.as_ref().map(|n| n.get_ref().clone()))
        .collect();
    let mut apps: Vec<_> = raws
        .into_iter()
        .filter_map(|raw| resolve(raw, &ctx, &mut diag))
        .collect();

    if let Some(only) = &opts.only {
        let wanted: Vec<&str> = only
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if wanted.is_empty() {
            diag.nowhere("--only: no app names given");
        }
        for name in &wanted {
            if !names.iter().any(|n| n == name) {
                diag.nowhere(format!(
                    "--only: no app named {name:?} in {}",
                    path.display()
                ));
            }
        }
        apps.retain(|app| wanted.contains(&app.name.as_str()));
    }

    diag.finish()?;
    Ok(Ecosystem {
        path: file,
        apps,
        daemon,
    })
}

/// The file's canonical path, or failing that (a file just read rarely
/// fails; text given to `load_str` may name no file) an absolute one.
fn absolute_file(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Checks the top level (`[[apps]]`, at least one, and an optional
/// `[daemon]`), reads every app and the daemon table.
fn read_top_level(doc: &DeTable<'_>, diag: &mut Diag<'_>) -> (Vec<RawApp>, DaemonConfig) {
    let mut apps = None;
    let mut daemon = DaemonConfig::default();
    for (key, value) in doc.iter() {
        match key.get_ref().as_ref() {
            "apps" => apps = Some(value),
            // TOML itself refuses a second [daemon].
            "daemon" => daemon = read_daemon(value, diag),
            other => diag.at(key.span(), unknown_top_level_key(other)),
        }
    }
    let Some(apps) = apps else {
        diag.at(0..0, "no [[apps]] table: at least one app is required");
        return (Vec::new(), daemon);
    };
    (read_apps(apps, diag), daemon)
}

/// `unknown top-level key "deamon" (did you mean "daemon"?)`.
fn unknown_top_level_key(key: &str) -> String {
    let mut message = format!("unknown top-level key {key:?}");
    if DAEMON_KEYS.contains(&key) {
        message.push_str(" (it belongs in the [daemon] table)");
    } else if let Some(near) = suggest(key, &["apps", "daemon"]) {
        message.push_str(&format!(" (did you mean {near:?}?)"));
    } else {
        message.push_str(" (only [[apps]] tables and one [daemon] table are allowed)");
    }
    message
}

/// Reads every app of the top-level `apps` value.
fn read_apps(apps: &toml::Spanned<DeValue<'_>>, diag: &mut Diag<'_>) -> Vec<RawApp> {
    let DeValue::Array(items) = apps.get_ref() else {
        let found = kind(apps.get_ref());
        diag.at(
            apps.span(),
            format!("apps: expected an array of tables ([[apps]]), found {found}"),
        );
        return Vec::new();
    };
    if items.is_empty() {
        diag.at(apps.span(), "apps: at least one app is required");
    }
    let mut raws = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item.get_ref() {
            DeValue::Table(table) => raws.push(RawApp::read(index, item.span(), table, diag)),
            other => diag.at(
                item.span(),
                format!("apps[{index}]: expected a table, found {}", kind(other)),
            ),
        }
    }
    raws
}

/// Names must be unique and ports too (the daemon binds each port once);
/// the second use is the one reported.
fn check_unique(raws: &[RawApp], src: &str, diag: &mut Diag<'_>) {
    let mut names: HashMap<&str, &RawApp> = HashMap::new();
    let mut ports: HashMap<u16, &RawApp> = HashMap::new();
    for raw in raws {
        if let Some(name) = &raw.name {
            match names.entry(name.get_ref()) {
                Entry::Vacant(slot) => {
                    slot.insert(raw);
                }
                Entry::Occupied(first) => {
                    let first = first.get();
                    let line = first
                        .name
                        .as_ref()
                        .map_or(0, |n| position(src, n.span().start).0);
                    let message = format!(
                        "apps[{}].name: duplicate app name {:?} (also apps[{}], line {line})",
                        raw.index,
                        name.get_ref(),
                        first.index,
                    );
                    diag.at(name.span(), message);
                }
            }
        }
        if let Some(port) = &raw.port {
            match ports.entry(*port.get_ref()) {
                Entry::Vacant(slot) => {
                    slot.insert(raw);
                }
                Entry::Occupied(first) => {
                    let first = first.get();
                    let owner = first
                        .name
                        .as_ref()
                        .map_or(String::new(), |n| format!(" {:?}", n.get_ref()));
                    let message = format!(
                        "apps[{}].port: {} is already used by apps[{}]{owner}",
                        raw.index,
                        port.get_ref(),
                        first.index,
                    );
                    diag.at(port.span(), message);
                }
            }
        }
    }
}
