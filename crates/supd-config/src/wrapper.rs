//! Programs that run the real server as their child: npm, yarn, pnpm, npx,
//! and a shell given a command line (`sh -c …`).
//!
//! An app with a `port` gets the daemon's listening socket as fd 3, with
//! `LISTEN_PID` naming the process supd started. In front of the server,
//! such a wrapper is that process: its child is told the socket is not
//! its own (or never gets it), binds the port by itself and fails, while
//! the daemon's socket queues clients nobody serves. `supctl start` warns
//! about it, and `show` gives the same advice for an instance reported as
//! not serving its port.

use crate::AppConfig;

/// A program that runs the server as its child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapper {
    /// A package manager running a script: `npm start`, `yarn start`…
    PackageManager(&'static str),
    /// A shell running a command line that does not `exec` the server.
    Shell(&'static str),
}

/// Package managers whose scripts run in a child shell (all Node-based, so
/// supd's preload loads in them: see [`crate::NodeProgram`]).
pub(crate) const PACKAGE_MANAGERS: &[&str] = &["npm", "yarn", "pnpm", "npx"];
/// Shells that fork for a command line given with `-c`.
const SHELLS: &[&str] = &["sh", "bash", "dash"];

impl Wrapper {
    /// The wrapper `script` is when run with `args`, if any. A shell whose
    /// command line starts with `exec` replaces itself with the server, which
    /// then is the process supd started: that is no wrapper.
    pub fn of(script: &str, args: &[String]) -> Option<Wrapper> {
        let program = script.rsplit('/').next().unwrap_or(script);
        if let Some(name) = PACKAGE_MANAGERS.iter().find(|&&n| n == program) {
            return Some(Wrapper::PackageManager(name));
        }
        let shell = SHELLS.iter().find(|&&n| n == program)?;
        let mut words = args.iter();
        let command = loop {
            let word = words.next()?;
            match word.strip_prefix('-') {
                // Options such as `-e` or `-ec`; `-c` takes the next word.
                Some(flags) if !flags.starts_with('-') && flags.contains('c') => {
                    break words.find(|w| !w.starts_with('-'))?;
                }
                Some(_) => {}
                // A script file, not a command line.
                None => return None,
            }
        };
        // What runs last is what the shell may become: `cd app && exec node …`.
        let last = command.rsplit(['\n', ';', '&', '|']).next().unwrap_or("");
        let first = last.split_whitespace().next();
        (first != Some("exec")).then_some(Wrapper::Shell(shell))
    }

    /// The wrapper of an app that has a port, if its program is one.
    pub fn of_app(app: &AppConfig) -> Option<Wrapper> {
        app.port?;
        Wrapper::of(&app.script, &app.args)
    }

    /// The program: `npm`, `sh`.
    pub fn program(self) -> &'static str {
        match self {
            Wrapper::PackageManager(name) | Wrapper::Shell(name) => name,
        }
    }

    /// How the wrapper is written: `npm`, `sh -c`.
    pub fn name(self) -> String {
        match self {
            Wrapper::PackageManager(name) => name.to_string(),
            Wrapper::Shell(name) => format!("{name} -c"),
        }
    }

    /// What to write instead, for people.
    pub fn advice(self) -> String {
        match self {
            Wrapper::PackageManager(name) => format!(
                "name the program that listens, not {name}: e.g. script = \"node\", args = [\"server.js\"] (what the {name} script runs)"
            ),
            Wrapper::Shell(name) => format!(
                "name the program that listens, or have the shell become it with exec: {name} -c \"exec node server.js\""
            ),
        }
    }

    /// The one-line warning `supctl start` prints for app `name`.
    pub fn warning(self, name: &str) -> String {
        format!(
            "warning: app \"{name}\": {} runs the server as a child process, which does not get the port's socket (LISTEN_PID is {}'s pid); {}",
            self.name(),
            self.program(),
            self.advice()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrappers_are_told_from_programs_that_listen() {
        let cases: &[(&str, &[&str], Option<Wrapper>)] = &[
            ("npm", &["start"], Some(Wrapper::PackageManager("npm"))),
            (
                "/usr/bin/npm",
                &["run", "serve"],
                Some(Wrapper::PackageManager("npm")),
            ),
            ("yarn", &["start"], Some(Wrapper::PackageManager("yarn"))),
            ("pnpm", &[], Some(Wrapper::PackageManager("pnpm"))),
            ("npx", &["serve"], Some(Wrapper::PackageManager("npx"))),
            ("sh", &["-c", "node server.js"], Some(Wrapper::Shell("sh"))),
            (
                "/bin/bash",
                &["-ec", "cd app && node server.js"],
                Some(Wrapper::Shell("bash")),
            ),
            (
                "dash",
                &["-e", "-c", "node server.js"],
                Some(Wrapper::Shell("dash")),
            ),
            // The shell becomes the server: no wrapper.
            ("sh", &["-c", "exec node server.js"], None),
            ("bash", &["-c", "  exec ./server"], None),
            ("sh", &["-c", "cd app && exec node server.js"], None),
            (
                "sh",
                &["-c", "exec node a.js; node b.js"],
                Some(Wrapper::Shell("sh")),
            ),
            // A script file, not a command line.
            ("sh", &["start.sh"], None),
            ("bash", &["-e", "start.sh"], None),
            ("sh", &[], None),
            // Programs that listen themselves.
            ("node", &["server.js"], None),
            ("python3", &["-c", "import app"], None),
            ("npm-check", &[], None),
        ];
        for &(script, args, expected) in cases {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            assert_eq!(Wrapper::of(script, &args), expected, "{script} {args:?}");
        }
    }

    #[test]
    fn only_an_app_with_a_port_is_warned_about() {
        let mut app = AppConfig::with_defaults("web".into(), "npm".into(), "/srv".into());
        app.args = vec!["start".into()];
        assert_eq!(Wrapper::of_app(&app), None);
        app.port = Some(3000);
        let wrapper = Wrapper::of_app(&app).expect("npm");
        assert_eq!(
            wrapper.warning("web"),
            "warning: app \"web\": npm runs the server as a child process, which does not get the port's socket (LISTEN_PID is npm's pid); name the program that listens, not npm: e.g. script = \"node\", args = [\"server.js\"] (what the npm script runs)"
        );
    }
}
