//! `save` and `resurrect`: the process list on disk (`SUPD_HOME/dump.json`).
//!
//! A dump is written atomically — to `dump.json.tmp`, fsync'd, then renamed
//! over `dump.json` ([`write_atomically`]) — after the previous dump is copied
//! to `dump.json.bak`, so a crash at any moment leaves a whole dump behind. Reading checks the
//! whole file (JSON, version, every app's config) before anything is applied:
//! a corrupt or truncated dump is refused, never half-applied.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use supd_config::AppConfig;
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

/// Writes `apps` as the new dump; the previous one becomes `dump.json.bak`.
pub fn save(home: &Home, apps: Vec<SavedApp>) -> Result<PathBuf, String> {
    let target = path(home);
    let fail = |e: io::Error| format!("cannot save the process list: {e}");
    let dump = Dump {
        version: VERSION,
        saved_at_ms: supd_proto::unix_ms(),
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
    fn saves_atomically_keeps_a_backup_and_refuses_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let app = |name: &str| SavedApp {
            config: AppConfig::with_defaults(name.into(), "sleep".into(), "/".into()),
            base_env: BTreeMap::new(),
            stopped: false,
        };
        save(&home, vec![app("a")]).unwrap();
        save(&home, vec![app("a"), app("b")]).unwrap();
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
