//! The table of PM2 app keys: one entry per key of PM2's own schema
//! (`lib/API/schema.json`, aliases included, plus `cmd`/`command`, which
//! PM2's `verifyConfs` also reads as `script`), each with the small
//! function that maps it, or the reason supd drops it. Adding a key is one
//! entry here; `docs/coming-from-pm2.md` lists the same keys.

use serde_json::Value;
use toml::Value as T;

use crate::convert::{
    args, bool_of, cron_restart, cwd, exec_mode, execute_command, exp_backoff, file, instance_var,
    instances_key, interpreter, kill_signal, log_date_format, max_restarts, name, node_args, port,
    script, stop_exit_codes, time, wait_ready,
};
use crate::draft::Draft;
use crate::values::{duration, kind, size};

/// What becomes of one PM2 key.
pub enum Rule {
    /// Mapped by this function; an `Err` is the reason it is dropped.
    Map(fn(&mut Draft, &str, &Value) -> Result<(), String>),
    /// Dropped, for this reason.
    Drop(&'static str),
}

/// One PM2 key and its aliases.
pub struct Key {
    /// The key's name first, then its aliases (as PM2's schema lists them).
    pub names: &'static [&'static str],
    /// What becomes of it.
    pub rule: Rule,
}

/// Shorthands for the table.
const fn map(
    names: &'static [&'static str],
    f: fn(&mut Draft, &str, &Value) -> Result<(), String>,
) -> Key {
    Key {
        names,
        rule: Rule::Map(f),
    }
}
const fn drop(names: &'static [&'static str], why: &'static str) -> Key {
    Key {
        names,
        rule: Rule::Drop(why),
    }
}

/// Every PM2 app key, in the order of PM2's schema.
pub const KEYS: &[Key] = &[
    map(&["script", "exec", "cmd", "command"], script),
    map(&["name"], name),
    drop(
        &["name_prefix"],
        "not supported (supd names are used as written)",
    ),
    drop(
        &["filter_env"],
        "not supported (supd passes the environment supctl runs with, plus env)",
    ),
    drop(
        &["namespace"],
        "not supported (supd has no namespaces; use --only a,b)",
    ),
    drop(&["install_url"], "not supported (supd installs no modules)"),
    map(&["cwd"], cwd),
    map(&["args"], args),
    map(&["exec_interpreter", "interpreter"], interpreter),
    map(
        &["node_args", "interpreterArgs", "interpreter_args"],
        node_args,
    ),
    map(&["out_file", "out", "output", "out_log"], |d, k, v| {
        file(d, k, v, "out_file")
    }),
    map(
        &["error_file", "error", "err", "err_file", "err_log"],
        |d, k, v| file(d, k, v, "error_file"),
    ),
    map(&["log_file", "log"], |d, k, v| file(d, k, v, "log_file")),
    drop(
        &["disable_logs"],
        "not supported (supd always captures stdout and stderr; see docs/logs.md)",
    ),
    drop(
        &["log_type"],
        "not supported (logs are plain lines; `supctl logs --json` prints JSON)",
    ),
    map(&["log_date_format"], log_date_format),
    map(&["time"], time),
    map(&["env"], |d, k, v| {
        d.env(k, v);
        Ok(())
    }),
    map(&["max_memory_restart"], |d, _, v| {
        d.set("max_memory_restart", size(v)?)
    }),
    map(&["pid_file", "pid"], |d, k, v| file(d, k, v, "pid_file")),
    map(&["restart_delay"], |d, _, v| {
        d.set("restart_delay", duration(v)?)
    }),
    map(&["exp_backoff_restart_delay"], exp_backoff),
    drop(
        &["source_map_support", "disable_source_map_support"],
        "not supported (supd runs no Node wrapper; pass --enable-source-maps in node_args)",
    ),
    map(&["wait_ready"], wait_ready),
    map(&["instances"], instances_key),
    map(&["kill_timeout"], |d, _, v| {
        d.set("kill_timeout", duration(v)?)
    }),
    drop(
        &["shutdown_with_message"],
        "not supported (supd stops with kill_signal)",
    ),
    map(&["listen_timeout"], |d, _, v| {
        d.set("listen_timeout", duration(v)?)
    }),
    map(&["cron_restart", "cron"], cron_restart),
    map(&["merge_logs", "combine_logs"], |d, k, v| {
        d.set("merge_logs", T::Boolean(bool_of(k, v)?))
    }),
    drop(
        &["vizion"],
        "not supported (supd does no version control metadata)",
    ),
    map(&["autorestart"], |d, k, v| {
        d.set("autorestart", T::Boolean(bool_of(k, v)?))
    }),
    map(&["watch_delay"], |d, k, v| d.watch_key(k, "watch_delay", v)),
    map(&["watch"], |d, k, v| d.watch_key(k, "watch", v)),
    map(&["ignore_watch"], |d, k, v| {
        d.watch_key(k, "ignore_watch", v)
    }),
    drop(
        &["watch_options"],
        "not supported (supd's watcher takes no chokidar options; see docs/watch.md)",
    ),
    map(&["min_uptime"], |d, _, v| d.set("min_uptime", duration(v)?)),
    map(&["max_restarts"], max_restarts),
    map(&["execute_command"], execute_command),
    map(&["exec_mode"], exec_mode),
    drop(&["force"], "not needed (supd starts an app once per name)"),
    drop(
        &["append_env_to_name"],
        "not supported (supd names are used as written)",
    ),
    drop(
        &["post_update"],
        "not supported (supd has no pull/update of apps)",
    ),
    drop(
        &[
            "trace",
            "disable_trace",
            "v8",
            "event_loop_inspector",
            "deep_monitoring",
            "pmx",
            "automation",
            "io",
        ],
        "not supported (supd has no PM2.io agent; see docs/monitoring.md)",
    ),
    drop(
        &["increment_var"],
        "not supported (set port: the daemon hands one shared socket to every instance)",
    ),
    map(&["instance_var"], instance_var),
    drop(
        &["treekill"],
        "not needed (supd always signals the whole process group)",
    ),
    map(&["port"], port),
    drop(
        &["username"],
        "not needed (PM2 records who started the app; supd runs apps as the daemon's user)",
    ),
    drop(
        &["uid", "user", "gid"],
        "not supported (supd runs apps as the daemon's user)",
    ),
    drop(&["windowsHide"], "not needed (supd runs on Unix)"),
    drop(
        &["kill_retry_time"],
        "not supported (supd sends SIGKILL to the group after kill_timeout)",
    ),
    drop(&["write"], "not supported (an internal PM2 flag)"),
    // Not in PM2's schema, but read by PM2 or documented for it.
    map(&["kill_signal"], kill_signal),
    map(&["stop_exit_codes"], stop_exit_codes),
    drop(
        &["autostart"],
        "not supported (every app of the file starts; use --only a,b)",
    ),
    drop(
        &["max_memory_restart_interval"],
        "not needed (supd checks memory every second)",
    ),
    drop(&["instance_id_env"], "not supported"),
    drop(
        &["wait_ready_timeout"],
        "not supported (use listen_timeout)",
    ),
];

/// `env_<name>`: the variables `--env <name>` adds (PM2's `^env_\S*$`).
const ENV_NAMED: Key = map(&["env_*"], |d, k, v| {
    if !v.is_object() {
        return Err(format!("expected a table of variables, found {}", kind(v)));
    }
    d.env(k, v);
    Ok(())
});

/// The entry for key `k`, if PM2 knows it.
pub fn find(k: &str) -> Option<&'static Key> {
    if k.starts_with("env_") && k.len() > 4 {
        return Some(&ENV_NAMED);
    }
    KEYS.iter().find(|key| key.names.contains(&k))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name appears once in the table: a key found twice would be
    /// mapped by whichever entry comes first, silently.
    #[test]
    fn each_key_has_one_entry() {
        let mut seen = std::collections::BTreeSet::new();
        for key in KEYS {
            for name in key.names {
                assert!(seen.insert(*name), "{name} is in the table twice");
            }
        }
    }

    /// Every key and alias of PM2's schema.json (at commit 03f09ef of
    /// Unitech/pm2) has an entry.
    #[test]
    fn every_key_of_pm2s_schema_has_an_entry() {
        for k in PM2_SCHEMA_KEYS {
            assert!(find(k).is_some(), "{k} has no entry");
        }
        assert!(find("env_production").is_some());
        assert!(find("no_such_key").is_none());
    }

    /// PM2's lib/API/schema.json: keys, then aliases.
    const PM2_SCHEMA_KEYS: &[&str] = &[
        "script",
        "exec",
        "name",
        "name_prefix",
        "filter_env",
        "namespace",
        "install_url",
        "cwd",
        "args",
        "exec_interpreter",
        "interpreter",
        "node_args",
        "interpreterArgs",
        "interpreter_args",
        "out_file",
        "out",
        "output",
        "out_log",
        "error_file",
        "error",
        "err",
        "err_file",
        "err_log",
        "log_file",
        "log",
        "disable_logs",
        "log_type",
        "log_date_format",
        "time",
        "env",
        "max_memory_restart",
        "pid_file",
        "pid",
        "restart_delay",
        "exp_backoff_restart_delay",
        "source_map_support",
        "disable_source_map_support",
        "wait_ready",
        "instances",
        "kill_timeout",
        "shutdown_with_message",
        "listen_timeout",
        "cron_restart",
        "cron",
        "merge_logs",
        "combine_logs",
        "vizion",
        "autorestart",
        "watch_delay",
        "watch",
        "ignore_watch",
        "watch_options",
        "min_uptime",
        "max_restarts",
        "execute_command",
        "exec_mode",
        "force",
        "append_env_to_name",
        "post_update",
        "trace",
        "disable_trace",
        "v8",
        "event_loop_inspector",
        "deep_monitoring",
        "increment_var",
        "instance_var",
        "pmx",
        "automation",
        "treekill",
        "port",
        "username",
        "uid",
        "user",
        "gid",
        "windowsHide",
        "kill_retry_time",
        "write",
        "io",
    ];
}
