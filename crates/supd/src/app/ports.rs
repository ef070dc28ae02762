//! The port's slots seen from the actor: steering new connections to the
//! slots that serve, routing (which slots get connections, which sockets
//! close), and the monitor's look at every slot's accept queue (see
//! [`crate::unserved`]).

use std::time::Instant;

use super::actor::App;
use super::record::Record;
use crate::instance::Instance;
use crate::unserved::{Report, held};

impl App {
    /// Steers the port's new connections to the slots that serve, if that
    /// changed (a failure is logged, and tried again at the next step).
    pub(super) fn steer(&mut self, instances: &[Instance]) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        if let Err(e) = self.ports.steer(listener, instances) {
            tracing::error!(app = %self.config.name, port = listener.port(), "cannot steer connections: {e}");
        }
    }

    /// Looks at every slot's accept queue (see [`crate::unserved`]): reports
    /// a slot nobody serves, and resets the connections that wait where
    /// nobody will take them.
    pub(super) fn look_at_queues(&mut self, operations: &tokio::sync::Mutex<()>) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        // Held to the end of this step if free: no operation starts meanwhile.
        let lock = operations.try_lock();
        let operation_running = lock.is_err();
        let instances: Vec<Instance> = self.records.iter().map(Record::view).collect();
        let holds = |generations: &[u64]| {
            let pids: Vec<u32> = instances
                .iter()
                .filter(|i| generations.contains(&i.generation))
                .filter_map(|i| i.pid)
                .collect();
            held::holds_connection(&pids, listener.port())
        };
        let decisions = self.ports.look(
            Instant::now(),
            listener,
            &instances,
            operation_running,
            holds,
        );
        // Away from a slot found not served before its clients are reset,
        // so they do not reconnect into it.
        self.steer(&instances);
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        let (name, port) = (&self.config.name, listener.port());
        for (slot, decision) in decisions {
            match decision.report {
                Some(Report::NotServing) => tracing::warn!(
                    app = %name, instance = slot, port, queued = listener.queued(slot),
                    "connections wait on the port and nothing accepts them"
                ),
                Some(Report::ServingAgain) => {
                    tracing::info!(app = %name, instance = slot, port, "accepts connections again")
                }
                Some(Report::DownResetting) => tracing::warn!(
                    app = %name, instance = slot, port,
                    "no process will accept the connections of this slot: they are reset until one runs"
                ),
                None => {}
            }
            if decision.reset {
                match listener.reset_queued(slot) {
                    Ok(n) => {
                        tracing::debug!(app = %name, instance = slot, port, "reset {n} connection(s)")
                    }
                    Err(e) => tracing::error!(
                        app = %name, instance = slot, port,
                        "cannot reset the connections nobody would accept: {e}"
                    ),
                }
            }
        }
    }

    /// Steers new connections to slots `0..slots` and closes the sockets
    /// of higher slots that have no live process.
    pub(super) fn route(&mut self, slots: u32) -> Result<(), String> {
        let live = self
            .records
            .iter()
            .filter(|r| r.state.is_live())
            .map(|r| r.slot + 1)
            .max()
            .unwrap_or(0);
        self.ports.route(slots);
        let instances: Vec<Instance> = self.records.iter().map(Record::view).collect();
        match self.listener.as_mut() {
            Some(l) => match self.ports.steer(l, &instances) {
                Ok(()) => {
                    l.close_from(live.max(slots));
                    Ok(())
                }
                Err(e) => Err(format!(
                    "app \"{}\": cannot steer connections on port {}: {e}",
                    self.config.name,
                    l.port()
                )),
            },
            None => Ok(()),
        }
    }
}
