//! `supctl start NAME…` and `start all`: apps the daemon already knows are
//! started with their own configs (as `pm2 start web` brings a stopped app
//! back), never replaced by a program of that name.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use supd_proto::{Home, Request};

use crate::args::StartArgs;
use crate::client::Client;

/// Starts the known apps `start` names, if it names apps: several targets
/// (every one must be an app), `all`, or a bare target that is an app's
/// name. `None`: the target is a file or a program, for the caller.
pub fn start(home: &Home, args: &StartArgs) -> anyhow::Result<Option<ExitCode>> {
    let names_apps = !args.more.is_empty()
        || args.target == "all"
        || (!may_be_file(&args.target) && is_app(home, &args.target)?);
    if !names_apps {
        return Ok(None);
    }
    if let Some(flag) = config_flag(args) {
        bail!(
            "app \"{}\" is known: `start` starts it with its own config, which {flag} would change; \
             change it in its ecosystem file and `supctl reload FILE`, or `supctl delete` it first",
            args.target
        );
    }
    let mut targets = vec![args.target.clone()];
    targets.extend(args.more.iter().cloned());
    let mut client = Client::connect(home)?;
    crate::start::report(&mut client, &Request::StartKnown { targets }).map(Some)
}

/// A target that names a file rather than an app: an ecosystem file
/// (TOML or PM2's), a path, or a file in the current folder.
fn may_be_file(target: &str) -> bool {
    crate::ecofile::is_file(target) || target.contains('/') || Path::new(target).is_file()
}

/// Whether the daemon knows an app called `name`; a daemon that is not
/// running knows none (and is not started to be asked).
fn is_app(home: &Home, name: &str) -> anyhow::Result<bool> {
    let Some(mut client) = Client::connect_existing(home)? else {
        return Ok(false);
    };
    Ok(crate::processes(&mut client)?
        .iter()
        .any(|p| p.name == name))
}

/// The first option given that would change a known app's config, if any.
fn config_flag(args: &StartArgs) -> Option<&'static str> {
    [
        ("--only", args.only.is_some()),
        ("--env", args.env.is_some()),
        ("--name", args.name.is_some()),
        ("-i", args.instances.is_some()),
        ("--port", args.port.is_some()),
        ("--host", args.host.is_some()),
        ("--watch", args.watch),
        ("arguments after --", !args.args.is_empty()),
    ]
    .into_iter()
    .find_map(|(flag, given)| given.then_some(flag))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Cmd};

    #[test]
    fn options_that_would_change_a_config_are_named() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["web"], None),
            (&["web", "api"], None),
            (&["web", "--port", "3000"], Some("--port")),
            (&["web", "--env", "production"], Some("--env")),
            (&["web", "-i", "2"], Some("-i")),
            (&["web", "--name", "api"], Some("--name")),
            (&["web", "--host", "localhost"], Some("--host")),
            (&["web", "--watch"], Some("--watch")),
            (&["web", "--only", "a"], Some("--only")),
            (&["web", "--", "x"], Some("arguments after --")),
        ];
        for (words, expected) in cases {
            let line = ["supctl", "start"].iter().chain(words.iter());
            let Cmd::Start(args) = Cli::try_parse_from(line).unwrap().command else {
                panic!("not start: {words:?}");
            };
            assert_eq!(config_flag(&args), *expected, "{words:?}");
        }
    }

    #[test]
    fn files_and_paths_are_not_taken_for_app_names() {
        for (target, file) in [
            ("web", false),
            ("ecosystem.toml", true),
            ("ecosystem.config.js", true),
            ("./web", true),
            ("bin/web", true),
        ] {
            assert_eq!(may_be_file(target), file, "{target}");
        }
    }
}
