//! An ecosystem file named on the command line (`start`, `reload`, `stop`,
//! `restart`, `delete`, `check`): `ecosystem.toml`, or a PM2 file
//! converted in memory exactly as `supctl import` converts it, with the
//! same notes on stderr. PM2 users keep typing
//! `supctl start ecosystem.config.js`.

use std::path::Path;

use supd_config::{Ecosystem, LoadOptions};

/// Whether `target` names an ecosystem file rather than an app or a
/// program (see [`supd_import::is_ecosystem_file`]; `app.js` is a program).
pub fn is_file(target: &str) -> bool {
    supd_import::is_ecosystem_file(target)
}

/// Loads `file`: TOML as it is, anything else as a PM2 file (its notes
/// printed on stderr, as `import` prints them).
pub fn load(file: &Path, opts: &LoadOptions) -> anyhow::Result<Ecosystem> {
    let (eco, notes) = supd_import::ecosystem(file, opts)?;
    for note in &notes {
        eprintln!("{note}");
    }
    Ok(eco)
}

/// The apps `target` names: every app of the file when it is an ecosystem
/// file, else `target` itself (an app name or `all`).
pub fn targets(target: &str) -> anyhow::Result<Vec<String>> {
    if !is_file(target) {
        return Ok(vec![target.to_string()]);
    }
    let eco = load(Path::new(target), &LoadOptions::default())?;
    Ok(eco.apps.into_iter().map(|a| a.name).collect())
}
