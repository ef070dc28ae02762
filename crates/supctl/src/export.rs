//! `supctl export kubernetes|systemd|compose FILE`: an ecosystem file as an
//! engine beyond one machine reads it (the translation is `supd_export`'s);
//! what the format cannot express on stderr, one `warning:` line each.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use supd_config::LoadOptions;
use supd_export::{Format, Options};

use crate::args::{ExportArgs, ExportFormat};
use crate::ecofile;

/// Runs `supctl export`.
pub fn run(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        env: args.env.clone(),
        only: args.only.clone(),
    };
    let eco = ecofile::load(&args.file, &opts)?;
    let project = match &args.project {
        Some(dir) => dir
            .canonicalize()
            .with_context(|| format!("--project {}", dir.display()))?,
        None => eco
            .path
            .parent()
            .map_or_else(PathBuf::new, Path::to_path_buf),
    };
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| supd_export::default_image(&project));
    let format = match args.format {
        ExportFormat::Kubernetes => Format::Kubernetes,
        ExportFormat::Systemd => Format::Systemd,
        ExportFormat::Compose => Format::Compose,
    };
    let export = supd_export::export(&eco, format, &Options { project, image });
    for warning in &export.warnings {
        eprintln!("warning: {warning}");
    }
    match &args.output {
        None => print!("{}", export.joined(format)),
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for doc in &export.documents {
                let path = dir.join(&doc.file);
                std::fs::write(&path, &doc.text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
