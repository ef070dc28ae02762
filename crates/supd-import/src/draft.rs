//! What is known of one app while its PM2 keys are read, one converter of
//! [`crate::keys`] at a time; [`crate::app`] then resolves what depends on
//! several keys (script and interpreter, cluster mode, port).

use serde_json::Value;
use toml::Value as T;

/// One app being converted.
#[derive(Default)]
pub struct Draft {
    /// `apps[index]`, for notes.
    pub index: usize,
    /// supd keys set so far (the last one written wins).
    pub keys: Vec<(&'static str, T)>,
    /// `env`, then each `env_<name>` in the order found.
    pub envs: Vec<(String, Vec<(String, String)>)>,
    /// `name`.
    pub name: Option<String>,
    /// `script` (or an alias).
    pub script: Option<String>,
    /// `args`.
    pub args: Option<Vec<String>>,
    /// `node_args` and its aliases.
    pub interp_args: Vec<String>,
    /// `exec_interpreter` / `interpreter`.
    pub interpreter: Option<String>,
    /// `cwd`, as written.
    pub cwd: Option<String>,
    /// `exec_mode` as written: `Some(true)` for cluster.
    pub cluster: Option<bool>,
    /// `instances` as PM2 reads it ("max" is 0), for its cluster rule.
    pub instances: Option<i64>,
    /// `time: true`.
    pub time: bool,
    /// PM2's `port` key, which PM2 passes as `env.PORT`.
    pub port: Option<String>,
    /// `watch`, `ignore_watch`, `watch_delay` (supd key, key as written,
    /// value), read once `cwd` is known.
    pub watch_keys: Vec<(&'static str, String, Value)>,
    /// Notes for stderr (`apps[i].key: …`).
    pub notes: Vec<String>,
    /// Keys dropped, as `# not imported:` comments.
    pub skipped: Vec<String>,
}

impl Draft {
    /// A draft for `apps[index]`.
    pub fn new(index: usize) -> Self {
        Self {
            index,
            ..Self::default()
        }
    }

    /// `apps[index].k`.
    pub fn at(&self, k: &str) -> String {
        format!("apps[{}].{k}", self.index)
    }

    /// Sets supd key `key` (replacing an earlier value: an alias and its key
    /// both written keep the last one, as a JavaScript object would).
    pub fn set(&mut self, key: &'static str, value: T) -> Result<(), String> {
        self.keys.retain(|(have, _)| *have != key);
        self.keys.push((key, value));
        Ok(())
    }

    /// A note about key `k` (mapped with a change worth knowing).
    pub fn note(&mut self, k: &str, text: String) {
        let at = self.at(k);
        self.notes.push(format!("{at}: {text}"));
    }

    /// Key `k` is not imported, for reason `why`: a note and a comment.
    pub fn skip(&mut self, k: &str, why: &str) {
        self.note(k, why.to_string());
        self.skipped.push(format!("{k}: {why}"));
    }

    /// Reads env table `table` (`env` or `env_<name>`).
    pub fn env(&mut self, table: &str, v: &Value) {
        let at = self.at(table);
        let vars = crate::values::env(v, &at, &mut self.notes);
        match self.envs.iter_mut().find(|(t, _)| t == table) {
            Some((_, have)) => *have = vars,
            None if table == "env" => self.envs.insert(0, (table.to_string(), vars)),
            None => self.envs.push((table.to_string(), vars)),
        }
    }

    /// Keeps a watch key for later (`watch` first: the others mean
    /// nothing without it).
    pub fn watch_key(&mut self, k: &str, key: &'static str, v: &Value) -> Result<(), String> {
        let entry = (key, k.to_string(), v.clone());
        if key == "watch" {
            self.watch_keys.insert(0, entry);
        } else {
            self.watch_keys.push(entry);
        }
        Ok(())
    }

    /// The value of supd key `key`, if set.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.keys.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// `env.PORT` as a port number.
    pub fn env_port(&self) -> Option<u16> {
        self.envs
            .iter()
            .find(|(t, _)| t == "env")
            .and_then(|(_, vars)| vars.iter().find(|(k, _)| k == "PORT"))
            .and_then(|(_, v)| v.trim().parse::<u16>().ok())
            .filter(|p| *p > 0)
    }
}
