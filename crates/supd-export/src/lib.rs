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
//! and Compose share: paths inside the image, names, the rewritten
//! environment), `vars` (the variables every format sets, and which win),
//! `text` (durations, sizes), `yaml` (an ordered YAML builder), and one
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
    /// The app's name as the file writes it; `None` for the `[daemon]` table.
    pub app: Option<String>,
    /// The key concerned (`cron_restart`, `env.USER_SERVICE_URL`).
    pub key: String,
    /// What happened to it, and what to do instead.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.app {
            Some(app) => write!(f, "app \"{app}\": ")?,
            None => f.write_str("[daemon]: ")?,
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The `[daemon]` table's written keys, which no export keeps: they are
/// supd's own settings (sampling, its metrics endpoint, log rotation
/// defaults), and an engine measures and keeps output by itself.
fn daemon_warnings(daemon: &supd_config::DaemonConfig) -> Vec<Warning> {
    daemon
        .written
        .iter()
        .map(|key| Warning {
            app: None,
            key: key.clone(),
            message: "supd's own setting: the engine measures and keeps output by itself".into(),
        })
        .collect()
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
    let mut export = match format {
        Format::Kubernetes => kubernetes::export(&eco.apps, options),
        Format::Systemd => systemd::export(&eco.apps),
        Format::Compose => compose::export(&eco.apps, options),
    };
    export.warnings.extend(daemon_warnings(&eco.daemon));
    export
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_daemon_keys_are_named() {
        let path = std::path::Path::new("/srv/p/ecosystem.toml");
        let text =
            "[daemon]\nmetrics = \"127.0.0.1:9100\"\n\n[[apps]]\nname = \"a\"\nscript = \"x\"\n";
        let eco = supd_config::load_str(text, path, &Default::default()).unwrap();
        let options = testing::options();
        for format in [Format::Kubernetes, Format::Systemd, Format::Compose] {
            let export = export(&eco, format, &options);
            let daemon: Vec<String> = export
                .warnings
                .iter()
                .filter(|w| w.app.is_none())
                .map(ToString::to_string)
                .collect();
            assert_eq!(daemon.len(), 1, "{format}: {daemon:?}");
            assert!(daemon[0].starts_with("[daemon]: metrics: "), "{daemon:?}");
        }
    }
}
