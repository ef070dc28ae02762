//! `supctl import`: a PM2 ecosystem file printed as the equivalent
//! `ecosystem.toml` (the translation is `supd_import`'s), the notes on
//! stderr.

use std::path::Path;
use std::process::ExitCode;

/// Runs `supctl import FILE`.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let (toml, notes) = supd_import::load(file)?;
    for note in &notes {
        eprintln!("{note}");
    }
    print!("{toml}");
    Ok(ExitCode::SUCCESS)
}
