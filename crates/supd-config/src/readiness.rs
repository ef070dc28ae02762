//! When an instance counts as online: the rule that picks an app's
//! [`Readiness`] from its config.
//!
//! Without `wait_ready`, PM2 (and supd before) calls an instance online the
//! moment it is spawned, so a rolling reload replaces every instance at once
//! and stops the old ones before any new one listens. supd's Node preload
//! knows better: it sees the app's server take the daemon's socket and says
//! so on the instance's IPC channel. A Node app with a `port` therefore waits
//! for that by default, and `supctl start node -i 2 --port 3000 -- app.js`
//! reloads one instance at a time with no key to write. `wait_ready = false`,
//! written, is the way out for a Node app that never listens on its `port`.
//!
//! A Node app in cluster mode without a `port` has its port learned: the
//! preload asks the daemon for the socket of the port the app's first
//! `listen()` names ([`AppConfig::learns_port`]); it is online once its
//! server listens on that socket, the same wait as with a `port`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::wrapper::PACKAGE_MANAGERS;
use crate::{AppConfig, ExecMode};

/// When a new instance of an app counts as online (and `start`, `reload`
/// and `scale` go on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Once spawned: nothing tells supd more.
    Spawned,
    /// When the app says so (`wait_ready = true`): `READY=1` on
    /// `NOTIFY_SOCKET`, or `process.send('ready')` from Node.
    Notified,
    /// When supd's Node preload reports that the app's server listens on the
    /// daemon's socket for `port` (a Node app with a `port`, `wait_ready`
    /// not written).
    Listening {
        /// The daemon-held port the server must take.
        port: u16,
        /// What runs Node: `node` itself, or a wrapper that never listens.
        program: NodeProgram,
    },
    /// When supd's Node preload reports that the app's server listens on the
    /// socket the daemon bound for the port its first `listen()` named (an
    /// app whose port is learned, `wait_ready` not written).
    Learning,
}

/// A program that runs Node, so that supd's preload loads in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeProgram {
    /// `node` (or `nodejs`): the app's own process.
    Node,
    /// A Node-based launcher (`npm`, `npx`, `yarn`, `pnpm`): the preload
    /// loads in it, but the server it starts is its grandchild, which cannot
    /// take supd's socket, so it never reports listening.
    Wrapper(&'static str),
}

/// The names (by file name) of Node itself; the Node-based launchers are
/// the package managers of [`crate::wrapper`].
const NODE: &[&str] = &["node", "nodejs"];

impl NodeProgram {
    /// What `script` is, by its file name (`/usr/bin/node` is `node`);
    /// `None` for a program that does not run Node.
    pub fn of(script: &str) -> Option<NodeProgram> {
        let file = Path::new(script).file_name()?.to_str()?;
        if NODE.contains(&file) {
            return Some(NodeProgram::Node);
        }
        PACKAGE_MANAGERS
            .iter()
            .find(|&&name| name == file)
            .map(|&name| NodeProgram::Wrapper(name))
    }
}

impl AppConfig {
    /// When this app's new instances count as online: `wait_ready = true`
    /// waits for the app's own signal; else a Node program (after
    /// [`AppConfig::apply_interpreter`], so `app.js` counts) with a `port`
    /// waits until the preload reports it listens, unless `wait_ready =
    /// false` was written; anything else is online at spawn.
    pub fn readiness(&self) -> Readiness {
        match (self.wait_ready, self.wait_ready_written, self.port) {
            (true, _, _) => Readiness::Notified,
            (false, false, None) if self.learns_port() => Readiness::Learning,
            (false, false, Some(port)) => {
                NodeProgram::of(&self.script).map_or(Readiness::Spawned, |program| {
                    Readiness::Listening { port, program }
                })
            }
            (false, _, _) => Readiness::Spawned,
        }
    }
}

impl AppConfig {
    /// Whether supd learns this app's port from its first `listen()`: `node`
    /// itself (after [`AppConfig::apply_interpreter`]) in cluster mode,
    /// without a `port`. Its instances get supd's preload and a Node IPC
    /// channel, on which the preload asks for the socket.
    ///
    /// Not a wrapper (`npm start`): the server is its grandchild, which has
    /// no channel to ask on. Not fork mode: instances of a fork app are
    /// independent, as under PM2.
    pub fn learns_port(&self) -> bool {
        self.exec_mode == ExecMode::Cluster
            && self.port.is_none()
            && NodeProgram::of(&self.script) == Some(NodeProgram::Node)
    }

    /// Why this app cannot start as written, if so: more than one instance
    /// in cluster mode, without a `port`, of a program whose port supd
    /// cannot learn (not `node` itself). Its instances would each bind the
    /// port the program names, and all but one fail with EADDRINUSE.
    /// Checked where a config is written (a file, `supctl start -i`), not on
    /// configs already saved.
    pub fn unshared_cluster(&self) -> Option<String> {
        let refused = self.exec_mode == ExecMode::Cluster
            && self.instances > 1
            && self.port.is_none()
            && !self.learns_port();
        refused.then(|| {
            format!(
                "cluster mode with {} instances and no port: supd learns the port only of a Node app (script \"node\" or a .js file); set port (--port) so supd binds it once for every instance, or use exec_mode = \"fork\" (in an ecosystem file) for instances that do not share a port",
                self.instances
            )
        })
    }
}

impl Readiness {
    /// Whether a new instance starts `launching` and waits (at most
    /// `listen_timeout`) for the word that it is ready; such an instance
    /// also gets a Node IPC channel (`NODE_CHANNEL_FD`), the way
    /// `process.send('ready')` arrives.
    pub fn waits(self) -> bool {
        self != Readiness::Spawned
    }

    /// Whether an instance still not ready at `listen_timeout` has failed
    /// (it is killed and the operation stops) rather than being late.
    ///
    /// A Node app's own server is only late: PM2 too calls it online at
    /// `listen_timeout`, and a slow start must not kill it (eight Express
    /// processes starting at once on two busy cores took over 3 s). It is
    /// counted online with the reason as its status; if it never listens,
    /// the held socket's queue shows it (see docs/cluster.md, "A port nobody
    /// serves"). The app's own word (`wait_ready = true`) is a promise to
    /// keep, and a wrapper cannot listen at all: those fail.
    pub fn fails_on_timeout(self) -> bool {
        !matches!(
            self,
            Readiness::Listening {
                program: NodeProgram::Node,
                ..
            } | Readiness::Learning
        )
    }

    /// Why an instance that waited `listen_timeout` is not ready: for a
    /// Node app with a port, that it did not listen, and what to do.
    pub fn timeout_reason(self, listen_timeout: Duration) -> String {
        let within = human(listen_timeout);
        match self {
            Readiness::Listening { port, program } => {
                let what = match program.hint() {
                    Some(hint) => format!("; {hint}"),
                    None => format!(
                        "; counted online, as PM2 does: raise listen_timeout if it needs longer, or set wait_ready = false if it does not serve port {port}"
                    ),
                };
                format!("did not listen on port {port} within {within} (listen_timeout){what}")
            }
            Readiness::Learning => format!(
                "did not listen within {within} (listen_timeout); counted online, as PM2 does: raise listen_timeout if it needs longer, or set wait_ready = false if it does not listen"
            ),
            Readiness::Spawned | Readiness::Notified => {
                format!("not ready within listen_timeout ({within})")
            }
        }
    }

    /// What to say beside any failure to become ready (an exit, a timeout):
    /// for a wrapper, the program to name instead.
    pub fn hint(self) -> Option<String> {
        match self {
            Readiness::Listening { program, .. } => program.hint(),
            Readiness::Spawned | Readiness::Notified | Readiness::Learning => None,
        }
    }
}

impl NodeProgram {
    /// For a wrapper, why it cannot become ready and what to write instead.
    fn hint(self) -> Option<String> {
        match self {
            NodeProgram::Node => None,
            NodeProgram::Wrapper(name) => Some(format!(
                "{name} starts the server as a grandchild, which cannot take supd's socket: name the program that listens (script = \"node\", args = [\"server.js\"]), not {name}"
            )),
        }
    }
}

/// How `show` words it: `when it listens on port 3000 (Node)`.
impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Spawned => f.write_str("at spawn"),
            Readiness::Notified => {
                f.write_str("when it sends READY=1 or process.send('ready') (wait_ready)")
            }
            Readiness::Listening {
                port,
                program: NodeProgram::Node,
            } => write!(f, "when it listens on port {port} (Node)"),
            Readiness::Listening {
                port,
                program: NodeProgram::Wrapper(name),
            } => write!(
                f,
                "when it listens on port {port} (Node, through {name}: it cannot)"
            ),
            Readiness::Learning => f.write_str("when it listens on the port it asks for (Node)"),
        }
    }
}

/// `3s`, `1500ms`: a duration as a user wrote it, most likely.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExecMode;

    /// An app running `script` with the given keys.
    fn app(script: &str, port: Option<u16>, wait_ready: Option<bool>) -> AppConfig {
        let mut app = AppConfig::with_defaults("a".into(), script.into(), "/srv".into());
        app.apply_interpreter();
        app.port = port;
        app.wait_ready = wait_ready.unwrap_or(false);
        app.wait_ready_written = wait_ready.is_some();
        app
    }

    #[test]
    fn the_rule() {
        use NodeProgram::{Node, Wrapper};
        use Readiness::{Listening, Notified, Spawned};
        let listening = |program| Listening {
            port: 3000,
            program,
        };
        let table: &[(&str, Option<u16>, Option<bool>, Readiness)] = &[
            // wait_ready = true: the app's own word, whatever it runs.
            ("node", Some(3000), Some(true), Notified),
            ("./server", None, Some(true), Notified),
            // Node with a port: when it listens.
            ("node", Some(3000), None, listening(Node)),
            ("/usr/local/bin/node", Some(3000), None, listening(Node)),
            ("nodejs", Some(3000), None, listening(Node)),
            ("app.js", Some(3000), None, listening(Node)),
            ("/srv/app.mjs", Some(3000), None, listening(Node)),
            ("npm", Some(3000), None, listening(Wrapper("npm"))),
            ("/usr/bin/npx", Some(3000), None, listening(Wrapper("npx"))),
            ("yarn", Some(3000), None, listening(Wrapper("yarn"))),
            ("pnpm", Some(3000), None, listening(Wrapper("pnpm"))),
            // wait_ready = false written: the way out.
            ("node", Some(3000), Some(false), Spawned),
            ("npm", Some(3000), Some(false), Spawned),
            // No port: nothing to listen on that supd knows of.
            ("node", None, None, Spawned),
            ("npm", None, None, Spawned),
            // Not Node: the preload does not load.
            ("python3", Some(3000), None, Spawned),
            ("app.py", Some(3000), None, Spawned),
            ("./api-gateway", Some(3000), None, Spawned),
            ("sh", Some(3000), None, Spawned),
            ("nodemon", Some(3000), None, Spawned),
            ("/opt/node/bin/deno", Some(3000), None, Spawned),
        ];
        for &(script, port, wait_ready, want) in table {
            assert_eq!(
                app(script, port, wait_ready).readiness(),
                want,
                "{script} port {port:?} wait_ready {wait_ready:?}"
            );
        }
    }

    #[test]
    fn a_file_that_writes_wait_ready_false_turns_the_wait_off() {
        let load = |keys: &str| {
            let text = format!("[[apps]]\nname = \"a\"\nscript = \"app.js\"\nport = 3000\n{keys}");
            let eco = crate::load_str(&text, Path::new("/srv/ecosystem.toml"), &Default::default())
                .unwrap_or_else(|e| panic!("{e}"));
            eco.apps[0].readiness()
        };
        let node = Readiness::Listening {
            port: 3000,
            program: NodeProgram::Node,
        };
        assert_eq!(load(""), node);
        assert_eq!(load("wait_ready = false\n"), Readiness::Spawned);
        assert_eq!(load("wait_ready = true\n"), Readiness::Notified);
    }

    #[test]
    fn the_mode_does_not_matter() {
        let mut cluster = app("node", Some(3000), None);
        cluster.exec_mode = ExecMode::Cluster;
        cluster.instances = 4;
        assert_eq!(
            cluster.readiness(),
            app("node", Some(3000), None).readiness()
        );
    }

    /// An app in `mode` running `script` with the given keys.
    fn in_mode(
        mode: ExecMode,
        script: &str,
        port: Option<u16>,
        wait_ready: Option<bool>,
    ) -> AppConfig {
        let mut app = app(script, port, wait_ready);
        app.exec_mode = mode;
        app
    }

    #[test]
    fn only_node_itself_in_cluster_mode_without_a_port_learns_it() {
        use ExecMode::{Cluster, Fork};
        use Readiness::{Learning, Notified, Spawned};
        /// Mode, script, port, wait_ready, whether it learns, readiness.
        type Case<'a> = (
            ExecMode,
            &'a str,
            Option<u16>,
            Option<bool>,
            bool,
            Readiness,
        );
        let table: &[Case] = &[
            (Cluster, "node", None, None, true, Learning),
            (Cluster, "app.js", None, None, true, Learning),
            (Cluster, "/usr/bin/nodejs", None, None, true, Learning),
            // The app's own word still decides when it is online.
            (Cluster, "app.js", None, Some(true), true, Notified),
            (Cluster, "app.js", None, Some(false), true, Spawned),
            // A port is configured: nothing to learn.
            (
                Cluster,
                "app.js",
                Some(3000),
                None,
                false,
                Readiness::Listening {
                    port: 3000,
                    program: NodeProgram::Node,
                },
            ),
            // Fork mode: independent instances, as under PM2.
            (Fork, "app.js", None, None, false, Spawned),
            // A wrapper's server has no channel to ask on; not Node at all.
            (Cluster, "npm", None, None, false, Spawned),
            (Cluster, "python3", None, None, false, Spawned),
            (Cluster, "./server", None, None, false, Spawned),
        ];
        for &(mode, script, port, wait_ready, learns, want) in table {
            let app = in_mode(mode, script, port, wait_ready);
            assert_eq!(app.learns_port(), learns, "{mode:?} {script} {port:?}");
            assert_eq!(
                app.readiness(),
                want,
                "{mode:?} {script} {port:?} {wait_ready:?}"
            );
        }
        let learning = Readiness::Learning;
        assert!(learning.waits() && !learning.fails_on_timeout());
        assert_eq!(learning.hint(), None);
        assert_eq!(
            learning.to_string(),
            "when it listens on the port it asks for (Node)"
        );
        assert!(
            learning
                .timeout_reason(Duration::from_secs(3))
                .starts_with("did not listen within 3s (listen_timeout); counted online")
        );
    }

    #[test]
    fn a_cluster_of_a_program_whose_port_cannot_be_learned_needs_a_port() {
        use ExecMode::{Cluster, Fork};
        let table: &[(ExecMode, &str, u32, Option<u16>, bool)] = &[
            (Cluster, "./server", 2, None, true),
            (Cluster, "app.py", 4, None, true),
            (Cluster, "npm", 2, None, true),
            // A port, one instance, fork mode, or Node: nothing refused.
            (Cluster, "./server", 2, Some(3000), false),
            (Cluster, "./server", 1, None, false),
            (Fork, "./server", 4, None, false),
            (Cluster, "app.js", 4, None, false),
            (Cluster, "node", 2, None, false),
        ];
        for &(mode, script, instances, port, refused) in table {
            let mut app = in_mode(mode, script, port, None);
            app.instances = instances;
            assert_eq!(
                app.unshared_cluster().is_some(),
                refused,
                "{mode:?} {script} {instances} {port:?}"
            );
        }
        let mut app = in_mode(Cluster, "./server", None, None);
        app.instances = 2;
        assert!(app.unshared_cluster().unwrap().starts_with(
            "cluster mode with 2 instances and no port: supd learns the port only of a Node app"
        ));
    }

    #[test]
    fn only_spawned_does_not_wait() {
        assert!(!Readiness::Spawned.waits());
        assert!(Readiness::Notified.waits());
        assert!(app("node", Some(3000), None).readiness().waits());
    }

    #[test]
    fn only_a_node_server_is_late_rather_than_failed_at_the_timeout() {
        let fails = |script, wait_ready| {
            app(script, Some(3000), wait_ready)
                .readiness()
                .fails_on_timeout()
        };
        assert!(!fails("node", None), "a slow Node server is late");
        assert!(!fails("app.js", None), "a slow Node server is late");
        assert!(fails("npm", None), "a wrapper never listens");
        assert!(fails("node", Some(true)), "wait_ready is a promise");
        assert!(fails("worker", Some(true)), "wait_ready is a promise");
    }

    #[test]
    fn failures_say_what_happened_and_what_to_do() {
        let secs = Duration::from_secs(3);
        let node = app("node", Some(3000), None).readiness();
        assert_eq!(
            node.timeout_reason(secs),
            "did not listen on port 3000 within 3s (listen_timeout); counted online, as PM2 does: \
             raise listen_timeout if it needs longer, or set wait_ready = false if it does not \
             serve port 3000"
        );
        assert_eq!(node.hint(), None);
        let npm = app("npm", Some(3000), None).readiness();
        let hint = "npm starts the server as a grandchild, which cannot take supd's socket: \
                    name the program that listens (script = \"node\", args = [\"server.js\"]), not npm";
        assert_eq!(npm.hint().as_deref(), Some(hint));
        assert_eq!(
            npm.timeout_reason(Duration::from_millis(1500)),
            format!("did not listen on port 3000 within 1500ms (listen_timeout); {hint}")
        );
        assert_eq!(
            Readiness::Notified.timeout_reason(Duration::from_millis(500)),
            "not ready within listen_timeout (500ms)"
        );
    }

    #[test]
    fn show_words_it() {
        let shown =
            |script, wait_ready| app(script, Some(3000), wait_ready).readiness().to_string();
        assert_eq!(shown("app.js", None), "when it listens on port 3000 (Node)");
        assert_eq!(
            shown("yarn", None),
            "when it listens on port 3000 (Node, through yarn: it cannot)"
        );
        assert_eq!(shown("app.js", Some(false)), "at spawn");
        assert_eq!(
            shown("./server", Some(true)),
            "when it sends READY=1 or process.send('ready') (wait_ready)"
        );
    }
}
