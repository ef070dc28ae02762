//! In which order one instance's process is swapped for a new one (a
//! reload, a replacement, a restart supd decides): the new one first, so
//! there is no gap, or the old one stopped first, so two never run at once.
//!
//! Start-first is safe only where the daemon holds the port: both processes
//! take the same socket and clients queue in its backlog. A fork app without
//! a daemon-held `port` may bind its port itself, and a second copy would die
//! with `EADDRINUSE` and be crash-restarted; PM2 restarts fork apps on reload
//! for the same reason. An app capped at one instance holds state that must
//! not exist twice.

use supd_config::{AppConfig, ExecMode};

/// How one instance's process is swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Start the new process, wait until it is ready, then stop the old one.
    StartFirst,
    /// Stop the old process gracefully, then start the new one.
    StopFirst,
}

/// The order for `config`: stop-first for an app capped at one instance
/// and for a fork app without a daemon-held port; start-first otherwise.
pub fn swap_order(config: &AppConfig) -> Order {
    let capped = config.max_instances == Some(1);
    let may_bind_its_port = config.exec_mode == ExecMode::Fork && config.port.is_none();
    if capped || may_bind_its_port {
        Order::StopFirst
    } else {
        Order::StartFirst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mode, instances, port, max_instances, and the order they get.
    type Case = (ExecMode, u32, Option<u16>, Option<u32>, Order);

    #[test]
    fn the_rule() {
        use ExecMode::{Cluster, Fork};
        use Order::{StartFirst, StopFirst};
        let table: &[Case] = &[
            // The daemon holds the socket: both take it, no gap.
            (Cluster, 4, Some(3000), None, StartFirst),
            (Fork, 1, Some(3000), None, StartFirst),
            (Fork, 2, Some(3000), None, StartFirst),
            // A cluster app without a port: workers that bind nothing shared.
            (Cluster, 2, None, None, StartFirst),
            // A fork app without a port may bind its own.
            (Fork, 1, None, None, StopFirst),
            (Fork, 3, None, None, StopFirst),
            // Capped at one instance: never two at once, port or not.
            (Cluster, 1, Some(3000), Some(1), StopFirst),
            (Fork, 1, Some(3000), Some(1), StopFirst),
            (Fork, 1, None, Some(1), StopFirst),
            // A higher cap is no reason.
            (Cluster, 2, Some(3000), Some(4), StartFirst),
        ];
        for &(mode, instances, port, max_instances, want) in table {
            let mut config = AppConfig::with_defaults("a".into(), "x".into(), "/".into());
            config.exec_mode = mode;
            config.instances = instances;
            config.port = port;
            config.max_instances = max_instances;
            assert_eq!(
                swap_order(&config),
                want,
                "{mode:?} x{instances} port {port:?} max_instances {max_instances:?}"
            );
        }
    }
}
