//! `supctl import`: a PM2 ecosystem file printed as the equivalent
//! `ecosystem.toml` (the translation is `supd_import`'s), the notes on
//! stderr.

use std::path::Path;
use std::process::ExitCode;

use supd_import::{convert, read};

/// Runs `supctl import FILE`.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let value = read(file)?;
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
