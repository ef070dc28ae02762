//! Freezing an app for an `update` and taking it over in the next image:
//! what the actor describes of itself (records as views, sockets,
//! channels), how the next image adopts the running processes and re-arms
//! their timers from now, and the task that watches each process's exit
//! and channels.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use supd_supervisor::Exit;
use tokio::net::{UnixDatagram, UnixStream};
use tokio::sync::oneshot;

use super::Command;
use super::actor::{App, Event};
use super::lifecycle::{self, State, Timer};
use super::record::Record;
use crate::handover::{self, FrozenApp, FrozenProcess};
use crate::listeners::SlotSockets;
use crate::readiness;

/// An app frozen for an `update`, until the exec or a thaw.
pub(super) struct Frozen {
    /// Commands received meanwhile, run at the thaw.
    pub(super) commands: Vec<Command>,
    /// Events queued before the freeze, other than notices, handled at the
    /// thaw before the ones queued after.
    events: Vec<Event>,
    /// Holds the notice gate closed.
    _notices: tokio::sync::OwnedRwLockWriteGuard<()>,
}

/// Copies of one process's notify socket and IPC channel.
pub(super) struct Kept {
    notify: OwnedFd,
    pub(super) notify_address: String,
    pub(super) ipc: Option<OwnedFd>,
}

impl App {
    /// Stops acting for an `update`: no notice is read from here on (the
    /// ones read before are handled now, so the handover has them); other
    /// events and the timers wait for a thaw. Describes the app.
    pub(super) async fn freeze(&mut self) -> FrozenApp {
        self.log.freeze().await;
        let closed = self.notices.clone().write_owned().await;
        let mut events = Vec::new();
        while let Ok(event) = self.inbox.try_recv() {
            match event {
                Event::Notice { generation, notice } => self.on_notice(generation, notice),
                other => events.push(other),
            }
        }
        self.frozen = Some(Frozen {
            commands: Vec::new(),
            events,
            _notices: closed,
        });
        self.describe()
    }

    /// Acts again (the next image did not take over): the events held, then
    /// the commands received meanwhile.
    pub(super) async fn thaw(&mut self) {
        self.log.thaw();
        if let Some(frozen) = self.frozen.take() {
            for event in frozen.events {
                self.on_event(event);
            }
            for cmd in frozen.commands {
                self.on_command(cmd).await;
            }
        }
    }

    /// Everything the next image needs to go on with this app.
    fn describe(&self) -> FrozenApp {
        let processes = self
            .channels
            .iter()
            .map(|(&generation, kept)| FrozenProcess {
                generation,
                notify: kept.notify.as_raw_fd(),
                notify_address: kept.notify_address.clone(),
                ipc: kept.ipc.as_ref().map(AsRawFd::as_raw_fd),
            })
            .collect();
        FrozenApp {
            config: (*self.config).clone(),
            base_env: (*self.base_env).clone(),
            instances: self.records.iter().map(Record::view).collect(),
            next_generation: self.next_generation,
            sockets: self
                .listener
                .as_ref()
                .map(SlotSockets::fds)
                .unwrap_or_default(),
            processes,
            pipes: self.log.frozen(),
        }
    }

    /// Takes over the processes the previous image started: watches each
    /// one's exit (and channels, when they were handed over too), and
    /// re-arms the timer its state needs; a record waiting to restart gets
    /// its restart again.
    pub(super) fn adopt(
        &mut self,
        processes: Vec<FrozenProcess>,
        exits: &mut HashMap<u32, oneshot::Receiver<Exit>>,
    ) {
        let mut channels: HashMap<u64, FrozenProcess> =
            processes.into_iter().map(|p| (p.generation, p)).collect();
        for i in 0..self.records.len() {
            let record = &mut self.records[i];
            let generation = record.generation;
            if record.state == State::WaitingRestart {
                let delay = lifecycle::resumed_restart_delay(
                    &self.policy,
                    record.history,
                    record.spawn_failures,
                );
                self.arm(generation, Timer::RestartDue, delay);
                continue;
            }
            let Some(exit) = record.state.pid().and_then(|pid| exits.remove(&pid)) else {
                continue;
            };
            let config = self.config.clone();
            let timer = match record.state {
                State::Launching { .. } => Some((Timer::ReadyTimeout, config.listen_timeout)),
                // Its kill time was counted from now as the record was made.
                State::Stopping { .. } => Some((Timer::KillDue, config.kill_timeout)),
                // Taken over counts as a keep-alive.
                State::Online { .. } => config.watchdog.map(|period| {
                    record.last_keepalive = Some(std::time::Instant::now());
                    (Timer::WatchdogDue, period)
                }),
                _ => None,
            };
            if let Some((timer, delay)) = timer {
                self.arm(generation, timer, delay);
            }
            let process = channels.remove(&generation).and_then(|p| {
                // SAFETY: this process's channels in the handover, taken once.
                let (notify, ipc) = unsafe { (handover::take(p.notify), p.ipc.map(|fd| handover::take(fd))) };
                readiness::adopt(notify, ipc)
                    .map(|(notify, ipc)| (notify, p.notify_address, ipc))
                    .inspect_err(|e| tracing::error!(app = %config.name, generation, "cannot take over a process's notify socket: {e}"))
                    .ok()
            });
            self.watch_process(generation, exit, process);
        }
    }

    /// Starts the task that reports a process's exit and what it says on its
    /// channels (notify socket, address, IPC), keeping copies of those for an
    /// `update`.
    pub(super) fn watch_process(
        &mut self,
        generation: u64,
        exit: oneshot::Receiver<Exit>,
        channels: Option<(UnixDatagram, String, Option<UnixStream>)>,
    ) {
        let listen = channels.map(|(notify, notify_address, ipc)| {
            let copies = notify.as_fd().try_clone_to_owned().and_then(|notify| {
                let ipc = ipc.as_ref().map(|s| s.as_fd().try_clone_to_owned()).transpose()?;
                Ok(Kept { notify, notify_address, ipc })
            });
            match copies {
                Ok(kept) => {
                    self.channels.insert(generation, kept);
                }
                Err(e) => tracing::warn!(app = %self.config.name, "cannot copy a process's channels; an update will not hand them over: {e}"),
            }
            (notify, ipc)
        });
        let events = self.events.clone();
        let gate = self.notices.clone();
        tokio::spawn(async move {
            let notices = events.clone();
            let on_notice = move |notice| {
                let _ = notices.send(Event::Notice { generation, notice });
            };
            let listening = async {
                match listen {
                    Some((notify, ipc)) => readiness::listen(notify, ipc, gate, on_notice).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                exit = exit => if let Ok(exit) = exit {
                    let _ = events.send(Event::Exited { generation, exit });
                },
                () = listening => {}
            }
        });
    }
}
