//! What Kubernetes and Compose share: each app runs in a container of one
//! image that holds the project at [`IMAGE_ROOT`], under a DNS name, with
//! the environment supd would give it.
//!
//! Under supd every app is on one machine, so apps reach each other at
//! `127.0.0.1:PORT`. In an engine each app is its own container, reached by
//! its name: an `env` value that names another exported app's local address
//! is rewritten to `NAME:PORT`. And since no supd hands the container its
//! socket as fd 3, the app binds `HOST:PORT` itself, as the platform's
//! services (and most servers) do without `LISTEN_FDS`: `HOST` is every
//! interface, so that the engine's network reaches it.

use std::path::Path;

use supd_config::AppConfig;

use crate::{IMAGE_ROOT, Options, Warning, vars};

/// The longest DNS label (Kubernetes object and Compose service names).
const MAX_LABEL: usize = 63;

/// `name` as a DNS label (RFC 1035: lower-case letters, digits and `-`,
/// starting with a letter, at most 63 bytes), which Kubernetes Services
/// and container host names need; `None` when it already is one.
pub fn dns_label(name: &str) -> Option<String> {
    let mut label: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if !label.starts_with(|c: char| c.is_ascii_lowercase()) {
        label.insert_str(0, "app-");
    }
    label.truncate(MAX_LABEL);
    let label = label.trim_end_matches('-').to_string();
    (label != name).then_some(label)
}

/// The names the apps go by in the engine, in order: each app's own when
/// it is a DNS label, else the nearest one, made unique with `-2`, `-3`…
/// when two apps would share it (a Service or Compose service each); every
/// change comes with a warning, so a user who looks for the old name finds
/// why.
pub fn engine_names(apps: &[AppConfig]) -> Vec<(String, Option<Warning>)> {
    let mut taken = std::collections::BTreeSet::new();
    apps.iter()
        .map(|app| {
            let label = dns_label(&app.name).unwrap_or_else(|| app.name.clone());
            let name = (1..)
                .map(|n| match n {
                    1 => label.clone(),
                    n => format!("{label}-{n}"),
                })
                .find(|name| !taken.contains(name))
                .expect("some suffix is free");
            taken.insert(name.clone());
            let warning = (name != app.name).then(|| Warning {
                app: Some(app.name.clone()),
                key: "name".into(),
                message: format!("not a DNS name, or taken: exported as {name}"),
            });
            (name, warning)
        })
        .collect()
}

/// The process a container runs: program, arguments, working folder, and
/// the environment supd would give every instance (less the instance
/// number, which each format sets its own way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The program: a path inside the image, or a bare name for its PATH.
    pub program: String,
    /// Its arguments (the script first for a `.js` or `.py` script).
    pub args: Vec<String>,
    /// The working folder inside the image.
    pub working_dir: String,
    /// `env`, rewritten where it names another app's local address, then
    /// `SUPD_APP_NAME`, and with a port `PORT` and `HOST`.
    pub env: Vec<(String, String)>,
}

/// Where `path` (absolute, on this machine) is inside the image; `None`
/// when it is outside the project.
fn in_image(path: &Path, project: &Path) -> Option<String> {
    let relative = path.strip_prefix(project).ok()?;
    if relative.as_os_str().is_empty() {
        return Some(IMAGE_ROOT.to_string());
    }
    Some(Path::new(IMAGE_ROOT).join(relative).display().to_string())
}

/// The container process of `app`; `peers` are the exported apps' ports
/// and engine names, for the rewrite of local addresses.
pub fn process(
    app: &AppConfig,
    options: &Options,
    peers: &[(u16, String)],
    warnings: &mut Vec<Warning>,
) -> Process {
    let mut warn = |key: &str, path: &str| {
        warnings.push(Warning {
            app: Some(app.name.clone()),
            key: key.into(),
            message: format!(
                "{path} is outside the project folder {} (--project): the image must provide it at that path",
                options.project.display()
            ),
        })
    };
    let mut app = app.clone();
    if app.script.starts_with('/') {
        match in_image(Path::new(&app.script), &options.project) {
            Some(path) => app.script = path,
            None => warn("script", &app.script),
        }
    }
    app.apply_interpreter();
    let working_dir = in_image(&app.cwd, &options.project).unwrap_or_else(|| {
        let cwd = app.cwd.display().to_string();
        warn("cwd", &cwd);
        cwd
    });
    let mut env: Vec<(String, String)> = vars::own(&app, &["HOST"])
        .into_iter()
        .map(|(key, value)| {
            let value = rewrite_peers(&value, peers);
            (key, value)
        })
        .chain(vars::supd(&app))
        .collect();
    if app.port.is_some() {
        env.push(("HOST".into(), "0.0.0.0".into()));
    }
    Process {
        program: app.script,
        args: app.args,
        working_dir,
        env,
    }
}

/// The exported apps with a port: (port, engine name), from the apps and
/// their [`engine_names`].
pub fn peers(apps: &[AppConfig], names: &[(String, Option<Warning>)]) -> Vec<(u16, String)> {
    apps.iter()
        .zip(names)
        .filter_map(|(app, (name, _))| Some((app.port?, name.clone())))
        .collect()
}

/// `value` with every `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT`
/// of a peer's port written `NAME:PORT`.
fn rewrite_peers(value: &str, peers: &[(u16, String)]) -> String {
    let mut value = value.to_string();
    for (port, name) in peers {
        for local in ["127.0.0.1", "localhost", "[::1]"] {
            value = replace_address(
                &value,
                &format!("{local}:{port}"),
                &format!("{name}:{port}"),
            );
        }
    }
    value
}

/// `text` with each `from` that no digit follows (`:3000` is not the start
/// of `:30001`) replaced by `to`.
fn replace_address(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for (name, label) in [
            ("api-gateway", None),
            ("worker2", None),
            ("Api_Gateway", Some("api-gateway")),
            ("my.app", Some("my-app")),
            ("2fa", Some("app-2fa")),
            ("-x-", Some("app--x")),
        ] {
            assert_eq!(dns_label(name).as_deref(), label, "{name}");
        }
        let long = "a".repeat(100);
        assert_eq!(dns_label(&long).unwrap().len(), MAX_LABEL);
    }

    #[test]
    fn engine_names_are_dns_labels_and_unique() {
        let apps: Vec<AppConfig> = ["api", "My_App", "my-app", "my.app", "api"]
            .into_iter()
            .map(|name| AppConfig::with_defaults(name.into(), "x".into(), "/".into()))
            .collect();
        let (names, warnings): (Vec<String>, Vec<Option<Warning>>) =
            engine_names(&apps).into_iter().unzip();
        assert_eq!(names, ["api", "my-app", "my-app-2", "my-app-3", "api-2"]);
        let warned: Vec<&str> = warnings
            .iter()
            .flatten()
            .filter_map(|w| w.app.as_deref())
            .collect();
        assert_eq!(warned, ["My_App", "my-app", "my.app", "api"]);
    }

    #[test]
    fn local_addresses_of_peers_become_their_names() {
        let peers = [
            (30001, "user-service".to_string()),
            (3000, "web".to_string()),
        ];
        for (value, rewritten) in [
            ("http://127.0.0.1:30001", "http://user-service:30001"),
            (
                "http://localhost:30001/api",
                "http://user-service:30001/api",
            ),
            ("[::1]:3000,127.0.0.1:3000", "web:3000,web:3000"),
            ("http://127.0.0.1:30002", "http://127.0.0.1:30002"),
            ("http://127.0.0.1:300011", "http://127.0.0.1:300011"),
            ("http://example.com:30001", "http://example.com:30001"),
        ] {
            assert_eq!(rewrite_peers(value, &peers), rewritten, "{value}");
        }
    }

    #[test]
    fn paths_inside_the_project_move_into_the_image() {
        let options = Options {
            project: "/srv/project".into(),
            image: "img".into(),
        };
        let mut app = AppConfig::with_defaults(
            "api".into(),
            "/srv/project/bin/api".into(),
            "/srv/project/web".into(),
        );
        app.port = Some(3000);
        let mut warnings = Vec::new();
        let process = process(&app, &options, &[], &mut warnings);
        assert_eq!(process.program, "/app/bin/api");
        assert_eq!(process.working_dir, "/app/web");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(process.env.contains(&("HOST".into(), "0.0.0.0".into())));

        app.script = "/usr/local/lib/app.js".into();
        let process = super::process(&app, &options, &[], &mut warnings);
        assert_eq!(
            (process.program.as_str(), process.args.as_slice()),
            ("node", ["/usr/local/lib/app.js".to_string()].as_slice())
        );
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].key, "script");

        app.script = "python3".into();
        warnings.clear();
        assert_eq!(
            super::process(&app, &options, &[], &mut warnings).program,
            "python3"
        );
        assert!(warnings.is_empty());
    }
}
