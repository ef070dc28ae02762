//! The daemon-wide settings the table keeps in force: the latest
//! `[daemon]` section (log rotation defaults for new configs), the
//! sampling interval, and where metrics are served.
//!
//! Kept apart from the table proper: they concern the daemon, not any app.

use std::net::SocketAddr;
use std::time::Duration;

use supd_config::{AppConfig, DaemonConfig};

use super::Registry;
use crate::metrics;

impl Registry {
    /// The latest `[daemon]` settings.
    pub fn daemon_config(&self) -> DaemonConfig {
        self.daemon
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The sampling interval in force.
    pub fn sample_interval(&self) -> Duration {
        *self.sample_interval.borrow()
    }

    /// Where metrics are served, if anywhere.
    pub async fn metrics_address(&self) -> Option<SocketAddr> {
        *self.metrics.lock().await
    }

    /// Applies the `[daemon]` settings an ecosystem file wrote (a file that
    /// does not set `sample_interval` leaves the daemon's own flag alone).
    pub async fn apply_daemon(&self, daemon: &DaemonConfig) -> Result<(), String> {
        *self.daemon.lock().unwrap_or_else(|p| p.into_inner()) = daemon.clone();
        if daemon.is_written("sample_interval") {
            self.sample_interval.send_if_modified(|current| {
                let changed = *current != daemon.sample_interval;
                *current = daemon.sample_interval;
                changed
            });
        }
        match daemon.metrics {
            Some(addr) => self.serve_metrics(addr).await,
            None => Ok(()),
        }
    }

    /// Fills the log-rotation keys an app left unset from `[daemon]`.
    pub fn with_log_defaults(&self, mut config: AppConfig) -> AppConfig {
        let d = self
            .daemon
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        config.log_max_size = config.log_max_size.or(d.log_max_size);
        config.log_retain = config.log_retain.or(Some(d.log_retain));
        config.log_compress = config.log_compress.or(Some(d.log_compress));
        config.log_rotate_interval = config.log_rotate_interval.or(d.log_rotate_interval);
        config
    }

    /// Starts serving metrics at `addr` (once: a daemon serves one address).
    pub async fn serve_metrics(&self, addr: SocketAddr) -> Result<(), String> {
        let mut current = self.metrics.lock().await;
        match *current {
            Some(serving) if serving == addr => Ok(()),
            Some(serving) => {
                tracing::warn!(%serving, %addr, "metrics are already served; restart the daemon to move them");
                Ok(())
            }
            None => {
                let source = metrics::Source {
                    apps: self.window(),
                    samples: self.samples.clone(),
                };
                metrics::serve(addr, source)
                    .await
                    .map_err(|e| format!("cannot serve metrics at {addr}: {e}"))?;
                *current = Some(addr);
                Ok(())
            }
        }
    }
}
