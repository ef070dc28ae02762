//! The app's listening port: binding it, rebinding it when the config
//! changes, and answering the preload of a Node app that asks for its
//! slot's socket at its first `listen()` (learning the port if the app has
//! none yet).

use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use supd_config::AppConfig;

use super::Env;
use super::actor::App;
use crate::listeners::SlotSockets;
use crate::readiness;

/// Where a learned port listens, from the host the app's `listen()` named:
/// every interface (`None`) for none or an "every interface" address, else
/// that address (`localhost` is 127.0.0.1); a host name is an error.
fn learned_host(host: Option<&str>) -> Result<Option<IpAddr>, String> {
    match host {
        None => Ok(None),
        Some(text) => {
            let ip = supd_config::parse_host(text.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|_| format!("host \"{text}\""))?;
            Ok((!ip.is_unspecified()).then_some(ip))
        }
    }
}

/// The daemon-owned listening sockets of an app with a port: the `taken`
/// ones of its first slots (the others are bound when needed), or new ones
/// (`held`: the app's current ones, when only its host changes).
pub(super) fn bind(
    config: &AppConfig,
    taken: Vec<OwnedFd>,
    held: Option<&SlotSockets>,
) -> Result<Option<SlotSockets>, String> {
    config
        .port
        .map(|port| {
            if !taken.is_empty() {
                return Ok(SlotSockets::adopt(config.host, port, taken));
            }
            match held {
                Some(held) if held.port() == port => held.moved(config.host),
                _ => SlotSockets::bind(config.host, port),
            }
            .map_err(|e| {
                let on = config.host.map(|h| format!(" on {h}")).unwrap_or_default();
                format!("app \"{}\": cannot bind port {port}{on}: {e}", config.name)
            })
        })
        .transpose()
}

impl App {
    /// Replaces the config (and caller environment) new processes get;
    /// rebinds the port if it changed.
    pub(super) fn configure(
        &mut self,
        mut config: AppConfig,
        base_env: Option<Env>,
    ) -> Result<(), String> {
        // A learned port stays the app's port while it would be learned again.
        if self.config.port_learned && config.learns_port() {
            config.port = self.config.port;
            config.host = self.config.host;
            config.port_learned = true;
        }
        if (config.port, config.host) != (self.config.port, self.config.host) {
            self.listener = bind(&config, Vec::new(), self.listener.as_ref())?;
            self.ports.rebound();
        }
        self.log.configure(&config);
        self.policy = supd_supervisor::Policy::from(&config);
        self.config = Arc::new(config);
        if let Some(env) = base_env {
            self.base_env = env;
        }
        Ok(())
    }

    /// Answers the preload of process `generation` (of `slot`), which asks
    /// for the socket of the `port` (and `host`) its app's first `listen()`
    /// named: the slot's socket of the app's port, learning that port first
    /// if the app has none yet; or why not, which the preload writes on the
    /// app's stderr.
    pub(super) fn answer_listen(
        &mut self,
        generation: u64,
        slot: u32,
        port: u16,
        host: Option<&str>,
    ) {
        let Some(ipc) = self.channels.get(&generation).and_then(|k| k.ipc.as_ref()) else {
            return;
        };
        let ipc = ipc.try_clone();
        let sent = ipc.and_then(|ipc| match self.socket_asked(slot, port, host) {
            Ok(socket) => readiness::send_socket(ipc.as_fd(), socket, port),
            Err(why) => {
                tracing::warn!(app = %self.config.name, instance = slot, "{why}");
                readiness::send_refusal(ipc.as_fd(), &why)
            }
        });
        if let Err(e) = sent {
            tracing::error!(app = %self.config.name, instance = slot, "cannot answer the request for port {port}: {e}");
        }
    }

    /// The socket of `slot` for `port` on `host` (as the app wrote it), which
    /// must be the app's port, or become it: learned, if the app learns its
    /// port ([`AppConfig::learns_port`]) and has none yet.
    fn socket_asked(
        &mut self,
        slot: u32,
        port: u16,
        host: Option<&str>,
    ) -> Result<BorrowedFd<'_>, String> {
        let name = self.config.name.clone();
        let asked = learned_host(host)
            .map_err(|e| format!("app \"{name}\" instance {slot}: listen() on {e}: supd binds a learned port on an IP address; set port and host in the app's config"))?;
        match self.config.port {
            Some(ours) if (ours, asked) != (port, self.config.host) => {
                let how = if self.config.port_learned {
                    "learned from the first listen()"
                } else {
                    "configured"
                };
                let on =
                    |host: Option<IpAddr>| host.map(|h| format!(" on {h}")).unwrap_or_default();
                return Err(format!(
                    "app \"{name}\" instance {slot}: listen() asked for port {port}{}, but the app's port is {ours}{} ({how}); every instance of a cluster app serves the same port",
                    on(asked),
                    on(self.config.host)
                ));
            }
            Some(_) => {}
            None if self.config.learns_port() => {
                let mut config = (*self.config).clone();
                config.port = Some(port);
                config.host = asked;
                config.port_learned = true;
                self.listener = bind(&config, Vec::new(), None)?;
                self.ports.rebound();
                tracing::info!(app = %name, port, "port learned from instance {slot}'s first listen()");
                self.config = Arc::new(config);
            }
            None => {
                return Err(format!(
                    "app \"{name}\" instance {slot}: asked for port {port}, but only a Node app in cluster mode has its port learned"
                ));
            }
        }
        let listener = self.listener.as_mut().ok_or("no listener")?;
        listener
            .socket(slot)
            .map_err(|e| format!("app \"{}\": cannot bind port {port}: {e}", self.config.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learned_port_listens_where_the_app_asked() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        /// The host the app named, and where the port listens (or an error).
        type Case<'a> = (Option<&'a str>, Result<Option<IpAddr>, ()>);
        let table: &[Case] = &[
            (None, Ok(None)),
            (Some("0.0.0.0"), Ok(None)),
            (Some("::"), Ok(None)),
            (Some("127.0.0.1"), Ok(ip("127.0.0.1"))),
            (Some("localhost"), Ok(ip("127.0.0.1"))),
            (Some("::1"), Ok(ip("::1"))),
            (Some("[::1]"), Ok(ip("::1"))),
            (Some("example.com"), Err(())),
        ];
        for (host, want) in table {
            assert_eq!(learned_host(*host).map_err(|_| ()), *want, "{host:?}");
        }
    }
}
