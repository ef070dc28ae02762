//! `supctl start`: an ecosystem file, one program started ad hoc, or known
//! apps ([`crate::known`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use supd_config::{AppConfig, ExecMode, LoadOptions, Wrapper};
use supd_proto::{Home, Outcome, Request, Response};

use crate::args::StartArgs;
use crate::client::Client;
use crate::render;

/// Runs `supctl start`. An app with a port whose program is a wrapper
/// (`npm start`, `sh -c …`) is warned about first, and started anyway.
pub fn run(home: &Home, args: &StartArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = crate::known::start(home, args)? {
        return Ok(code);
    }
    let (apps, daemon) = if crate::ecofile::is_file(&args.target) {
        let opts = LoadOptions {
            env: args.env.clone(),
            only: args.only.clone(),
        };
        let eco = crate::ecofile::load(Path::new(&args.target), &opts)?;
        (eco.apps, Some(eco.daemon))
    } else {
        (vec![adhoc(args)?], None)
    };
    for app in &apps {
        if let Some(wrapper) = Wrapper::of_app(app) {
            eprintln!("{}", wrapper.warning(&app.name));
        }
    }
    let base_env: BTreeMap<String, String> = std::env::vars().collect();
    let mut client = Client::connect(home)?;
    let request = Request::Start {
        apps,
        base_env,
        daemon,
    };
    report(&mut client, &request)
}

/// Sends a `start`-like request (start, resurrect), prints what happened to
/// each app and the process table; fails if any app failed.
pub fn report(client: &mut Client, request: &Request) -> anyhow::Result<ExitCode> {
    let Response::Started { apps: outcomes } = client.request(request)? else {
        bail!("unexpected answer from supd");
    };
    let mut failed = false;
    for o in &outcomes {
        match o.outcome {
            Outcome::Started => println!("started {}", o.name),
            Outcome::AlreadyOnline => println!("{} is already online", o.name),
            Outcome::Stopped => println!("restored {} (stopped)", o.name),
            Outcome::Failed => {
                failed = true;
                eprintln!("error: {}", o.error.as_deref().unwrap_or("failed to start"));
            }
        }
    }
    if let Response::List { processes } = client.request(&Request::List)? {
        println!("{}", render::process_table(&processes));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The config of `supctl start CMD [--name] [-i] [--port [--host]] [-- ARGS]`.
fn adhoc(args: &StartArgs) -> anyhow::Result<AppConfig> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let script = if args.target.contains('/') {
        cwd.join(&args.target).to_string_lossy().into_owned()
    } else {
        args.target.clone()
    };
    let name = match &args.name {
        Some(name) => name.clone(),
        None => Path::new(&args.target)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.target.clone()),
    };
    let mut app = AppConfig::with_defaults(name.clone(), script, PathBuf::from(&cwd));
    app.args = args.args.clone();
    app.apply_interpreter();
    app.port = args.port;
    if let Some(host) = &args.host {
        app.host = Some(
            supd_config::parse_host(host)
                .map_err(|e| anyhow::anyhow!("app \"{name}\": --host: {e}"))?,
        );
    }
    if args.watch {
        app.watch = vec![app.cwd.clone()];
    }
    if let Some(n) = &args.instances {
        app.exec_mode = ExecMode::Cluster;
        app.instances = supd_config::parse_instances(n)
            .map_err(|e| anyhow::anyhow!("app \"{name}\": -i {n}: {e}"))?;
    }
    app.validate()
        .map_err(|e| anyhow::anyhow!("app \"{name}\": {e}"))?;
    if let Some(refused) = app.unshared_cluster() {
        anyhow::bail!("app \"{name}\": {refused}");
    }
    Ok(app)
}
