//! `save` and `resurrect`: the process list on disk (`SUPD_HOME/dump.json`),
//! with the daemon settings in force (`[daemon]`: metrics address, sample
//! interval, log rotation defaults), so that a daemon started at boot by
//! `supd --resurrect` serves the same metrics as the one that saved.
//!
//! A dump is written atomically — to `dump.json.tmp`, fsync'd, then renamed
//! over `dump.json` ([`write_atomically`]) — after the previous dump is copied
//! to `dump.json.bak`, so a crash at any moment leaves a whole dump behind. Reading checks the
//! whole file (JSON, version, every app's config) before anything is applied:
//! a corrupt or truncated dump is refused, never half-applied.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use supd_config::{AppConfig, DaemonConfig};
use supd_proto::Home;
use supd_proto::home::read_file;

use crate::app::AppView;
use crate::home::{sibling, write_atomically};

/// The dump format's version; a newer one is refused.
const VERSION: u32 = 1;

/// Everything `resurrect` needs to bring the apps back.
#[derive(Debug, Serialize, Deserialize)]
pub struct Dump {
    /// Format version.
    pub version: u32,
    /// Unix time of the save, in milliseconds.
    pub saved_at_ms: u64,
    /// The daemon settings in force at the save ([`in_force`]); `None` in a
    /// dump written before they were saved, which leaves them alone.
    #[serde(default)]
    pub daemon: Option<DaemonConfig>,
    /// The apps, in start order.
    pub apps: Vec<SavedApp>,
}

/// One app as saved.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedApp {
    /// Its resolved config, with the instance count it had (after scaling).
    pub config: AppConfig,
    /// The environment of the `supctl start` that started it.
    pub base_env: BTreeMap<String, String>,
    /// It was stopped: resurrect registers it without starting it.
    pub stopped: bool,
}

impl SavedApp {
    /// An app as it is now: its config (with its current instance count),
    /// caller environment, and whether it is stopped.
    pub fn of(view: &AppView) -> SavedApp {
        SavedApp {
            stopped: !view.instances.iter().any(|i| i.is_active()),
            config: (*view.config).clone(),
            base_env: (*view.base_env).clone(),
        }
    }
}

/// `SUPD_HOME/dump.json`.
pub fn path(home: &Home) -> PathBuf {
    home.dir().join("dump.json")
}

/// The daemon settings to save: the latest `[daemon]` table, with the
/// sample interval and metrics address actually in force (a `supd` flag may
/// have set them, and a later file without `[daemon]` does not undo them).
/// Each counts as written, so that resurrect restores it, when it differs
/// from the default and a file could have written it (a `supd` flag is not
/// bounded: `--sample-interval 10ms` is not saved, `[daemon]` refuses it).
pub fn in_force(
    latest: DaemonConfig,
    sample_interval: Duration,
    metrics: Option<SocketAddr>,
) -> DaemonConfig {
    let mut saved = latest;
    let mut keep = |key: &str, set: &dyn Fn(&mut DaemonConfig)| {
        let mut candidate = saved.clone();
        set(&mut candidate);
        if candidate.validate().is_ok() {
            candidate.written.insert(key.into());
            saved = candidate;
        }
    };
    if sample_interval != DaemonConfig::default().sample_interval {
        keep("sample_interval", &|d| d.sample_interval = sample_interval);
    }
    if let Some(addr) = metrics {
        keep("metrics", &|d| d.metrics = Some(addr));
    }
    saved
}

/// Writes `daemon` and `apps` as the new dump; the previous one becomes
/// `dump.json.bak`.
pub fn save(home: &Home, daemon: DaemonConfig, apps: Vec<SavedApp>) -> Result<PathBuf, String> {
    let target = path(home);
    let fail = |e: io::Error| format!("cannot save the process list: {e}");
    let dump = Dump {
        version: VERSION,
        saved_at_ms: supd_proto::unix_ms(),
        daemon: Some(daemon),
        apps,
    };
    let bytes = serde_json::to_vec_pretty(&dump)
        .map_err(|e| format!("cannot encode the process list: {e}"))?;
    match read_file(&target) {
        Ok(previous) => write_atomically(&sibling(&target, ".bak"), &previous, true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| fail(io::Error::new(e.kind(), format!("backup: {e}"))))?;
    write_atomically(&target, &bytes, true).map_err(fail)?;
    Ok(target)
}

/// Reads and checks the dump; any problem is one message naming the file.
pub fn load(home: &Home) -> Result<Dump, String> {
    let target = path(home);
    let shown = target.display();
    let bytes = read_file(&target).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("no saved process list at {shown} (run supctl save first)")
        }
        _ => format!("cannot read {shown}: {e}"),
    })?;
    let backup = "the previous dump, if any, is dump.json.bak";
    let dump: Dump = serde_json::from_slice(&bytes).map_err(|e| {
        format!("{shown} is corrupt or truncated ({e}); nothing was started; {backup}")
    })?;
    if dump.version != VERSION {
        return Err(format!(
            "{shown} has format version {}, this supd reads {VERSION}",
            dump.version
        ));
    }
    if let Some(daemon) = &dump.daemon {
        daemon
            .validate()
            .map_err(|e| format!("{shown}: daemon settings: {e}; nothing was started; {backup}"))?;
    }
    for app in &dump.apps {
        app.config.validate().map_err(|e| {
            format!(
                "{shown}: app \"{}\": {e}; nothing was started; {backup}",
                app.config.name
            )
        })?;
    }
    Ok(dump)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_the_settings_in_force_that_a_file_could_write() {
        let ms = Duration::from_millis;
        let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let written = |keys: &[&str]| DaemonConfig {
            written: keys.iter().map(|k| k.to_string()).collect(),
            ..DaemonConfig::default()
        };
        // (latest [daemon], interval in force, metrics served) -> (saved interval, metrics, written keys)
        let cases = [
            (
                DaemonConfig::default(),
                ms(1000),
                None,
                ms(1000),
                None,
                vec![],
            ),
            (
                DaemonConfig::default(),
                ms(250),
                addr("127.0.0.1:9615"),
                ms(250),
                addr("127.0.0.1:9615"),
                vec!["metrics", "sample_interval"],
            ),
            // A flag out of [daemon]'s bounds, or port 0, is not saved.
            (
                DaemonConfig::default(),
                ms(10),
                addr("127.0.0.1:0"),
                ms(1000),
                None,
                vec![],
            ),
            // A file that wrote the default interval keeps it written.
            (
                written(&["sample_interval"]),
                ms(1000),
                None,
                ms(1000),
                None,
                vec!["sample_interval"],
            ),
            // The address served wins over a later file's (served once).
            (
                DaemonConfig {
                    metrics: addr("127.0.0.1:2"),
                    ..written(&["metrics"])
                },
                ms(1000),
                addr("127.0.0.1:1"),
                ms(1000),
                addr("127.0.0.1:1"),
                vec!["metrics"],
            ),
        ];
        for (latest, interval, metrics, want_interval, want_metrics, want_written) in cases {
            let saved = in_force(latest, interval, metrics);
            assert_eq!(
                saved.sample_interval, want_interval,
                "{interval:?} {metrics:?}"
            );
            assert_eq!(saved.metrics, want_metrics, "{interval:?} {metrics:?}");
            let keys: Vec<&str> = saved.written.iter().map(String::as_str).collect();
            assert_eq!(keys, want_written, "{interval:?} {metrics:?}");
        }
    }

    #[test]
    fn reads_a_dump_without_daemon_settings() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let old = r#"{"version": 1, "saved_at_ms": 1, "apps": []}"#;
        std::fs::write(path(&home), old).unwrap();
        assert!(load(&home).unwrap().daemon.is_none());
    }

    #[test]
    fn saves_atomically_keeps_a_backup_and_refuses_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let app = |name: &str| SavedApp {
            config: AppConfig::with_defaults(name.into(), "sleep".into(), "/".into()),
            base_env: BTreeMap::new(),
            stopped: false,
        };
        let daemon = DaemonConfig::default;
        save(&home, daemon(), vec![app("a")]).unwrap();
        save(&home, daemon(), vec![app("a"), app("b")]).unwrap();
        assert_eq!(load(&home).unwrap().apps.len(), 2);
        let bak = std::fs::read_to_string(dir.path().join("dump.json.bak")).unwrap();
        assert!(bak.contains("\"a\"") && !bak.contains("\"b\""));
        let full = std::fs::read(path(&home)).unwrap();
        std::fs::write(path(&home), &full[..full.len() / 2]).unwrap();
        let err = load(&home).unwrap_err();
        assert!(
            err.contains("corrupt or truncated") && err.contains("nothing was started"),
            "{err}"
        );
    }
}
