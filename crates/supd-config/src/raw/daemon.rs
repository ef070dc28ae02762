//! The `[daemon]` table, read key by key like an app.

use toml::Spanned;
use toml::de::DeValue;

use super::value::{Value, kind};
use super::{APP_KEYS, unknown_key};
use crate::DaemonConfig;
use crate::diag::Diag;
use crate::values::{self, bounds};

/// Every key `[daemon]` may have (for "did you mean").
pub(crate) const DAEMON_KEYS: &[&str] = &[
    "sample_interval",
    "metrics",
    "log_max_size",
    "log_retain",
    "log_compress",
    "log_rotate_interval",
];

/// Reads the top-level `daemon` value, reporting every problem; a key that
/// fails keeps its default (the file is rejected anyway).
pub(crate) fn read_daemon(value: &Spanned<DeValue<'_>>, diag: &mut Diag<'_>) -> DaemonConfig {
    let mut daemon = DaemonConfig::default();
    let table = match value.get_ref() {
        DeValue::Table(table) => table,
        DeValue::Array(_) => {
            diag.at(
                value.span(),
                "daemon: expected one [daemon] table, found an array (write [daemon], not [[daemon]])",
            );
            return daemon;
        }
        other => {
            diag.at(
                value.span(),
                format!("daemon: expected a table ([daemon]), found {}", kind(other)),
            );
            return daemon;
        }
    };
    for (key, value) in table.iter() {
        let key_name: &str = key.get_ref();
        if DAEMON_KEYS.contains(&key_name) {
            daemon.written.insert(key_name.to_owned());
        }
        let mut v = Value {
            diag: &mut *diag,
            path: format!("daemon.{key_name}"),
            value,
        };
        match key_name {
            "sample_interval" => {
                if let Some(d) = v.duration_within(
                    bounds::SAMPLE_INTERVAL_MIN,
                    Some(bounds::SAMPLE_INTERVAL_MAX),
                ) {
                    daemon.sample_interval = d;
                }
            }
            "metrics" => daemon.metrics = v.socket_addr(),
            "log_max_size" => daemon.log_max_size = v.log_size(),
            "log_retain" => {
                if let Some(n) = v.count(1) {
                    daemon.log_retain = n;
                }
            }
            "log_compress" => {
                if let Some(b) = v.boolean() {
                    daemon.log_compress = b;
                }
            }
            "log_rotate_interval" => {
                daemon.log_rotate_interval = v.checked_string(values::check_rotate_schedule);
            }
            _ => diag.at(
                key.span(),
                unknown_key(
                    "daemon",
                    key_name,
                    DAEMON_KEYS,
                    APP_KEYS,
                    "an [[apps]] table",
                ),
            ),
        }
    }
    daemon
}
