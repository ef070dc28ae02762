//! An ecosystem file as the engines beyond one machine read it, for
//! `supctl export`: Kubernetes manifests, systemd units, a Compose file.
//!
//! supd supervises one host. Past one host, users move to an engine that
//! already schedules fleets; this crate carries the file's meaning there:
//! replicas, the capped services never run twice, probes, grace periods,
//! memory limits, environment. What a format cannot express is never dropped
//! in silence: it comes back as a [`Warning`] naming the app and the key.
//!
//! Pure: a loaded [`supd_config::Ecosystem`] in, text [`Document`]s and
//! warnings out; nothing here reads or writes files. Inside: `fate` (the
//! table of what each format keeps and loses), `container` (what Kubernetes
//! and Compose share: paths inside the image, names, the environment),
//! `vars` (the environment), `text` (durations, sizes), `yaml` (an ordered YAML builder), and one
//! module per format.

mod compose;
mod container;
mod fate;
mod kubernetes;
mod systemd;
#[cfg(test)]
mod testing;
mod text;
mod vars;
mod yaml;

use std::fmt;
use std::path::PathBuf;

pub use fate::Format;

/// Choices for the container formats (Kubernetes and Compose).
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder the image holds at [`IMAGE_ROOT`]: scripts and working
    /// folders under it are found there; a script elsewhere is a warning,
    /// since the image cannot be assumed to have it.
    pub project: PathBuf,
    /// The image every container runs (one image holds the whole project,
    /// as the platform's own image does).
    pub image: String,
}

/// Where the image holds the project folder ([`Options::project`]).
pub const IMAGE_ROOT: &str = "/app";

/// The image name when none is given: the project folder's name as an
/// image name (lower case, `-` for anything else), tagged `latest`.
pub fn default_image(project: &std::path::Path) -> String {
    let folder = project
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = container::dns_label(&folder).unwrap_or(folder);
    format!("{name}:latest")
}

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its file name with `-o DIR` (`api-gateway.yaml`, `api-gateway@.service`).
    pub file: String,
    /// Its contents.
    pub text: String,
}

/// One thing the format could not keep, or kept only in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The app's name as the file writes it.
    pub app: String,
    /// The key concerned (`cron_restart`, `env.USER_SERVICE_URL`).
    pub key: String,
    /// What happened to it, and what to do instead.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "app \"{}\": {}: {}", self.app, self.key, self.message)
    }
}

/// An ecosystem in one format: its documents, and what it lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// In file order of the apps (one or more per app, depending on the format).
    pub documents: Vec<Document>,
    /// In file order of the apps.
    pub warnings: Vec<Warning>,
}

impl Export {
    /// The documents as one stream for stdout: YAML documents separated by
    /// `---` (Kubernetes), or the units one after the other, each under a
    /// `# FILE` comment (systemd; `-o DIR` is the way to use them).
    pub fn joined(&self, format: Format) -> String {
        let separator = |doc: &Document| match format {
            Format::Kubernetes => "---\n".to_string(),
            Format::Compose => String::new(),
            Format::Systemd => format!("# {}\n", doc.file),
        };
        self.documents
            .iter()
            .map(|doc| format!("{}{}", separator(doc), doc.text))
            .collect::<Vec<_>>()
            .join(if format == Format::Systemd { "\n" } else { "" })
    }
}

/// Exports `eco` in `format` (the `options` matter only to the container
/// formats).
pub fn export(eco: &supd_config::Ecosystem, format: Format, options: &Options) -> Export {
    match format {
        Format::Kubernetes => kubernetes::export(&eco.apps, options),
        Format::Systemd => systemd::export(&eco.apps),
        Format::Compose => compose::export(&eco.apps, options),
    }
}
