//! `supctl`: the command-line client of supd.
//!
//! Each command is one round trip to the daemon (started on demand), except
//! `check`, `import` and `export`, which only read a file, and `logs`, which
//! reads the log files.
//! Failures print one `error: …` line per problem on stderr and exit 1.

mod args;
mod client;
mod ecofile;
mod env;
mod export;
mod import;
mod known;
mod logs;
mod monit;
mod pm2;
mod render;
mod start;
mod startup;
mod update;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use supd_config::LoadOptions;
use supd_proto::{Home, Request, Response};

use crate::args::{Cli, Cmd, JsonArg};
use crate::client::Client;

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`supctl logs | head`), like any Unix tool.
    // SAFETY: setting a signal disposition to its default before any thread exists.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            for line in format!("{e:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = Home::from_env();
    client::set_timeout(cli.timeout.0);
    match cli.command {
        Cmd::Start(args) => start::run(&home, &args),
        Cmd::Stop(t) => each(&home, &t.name, |target| Request::Stop { target }, "stopped"),
        Cmd::Restart(t) => each(
            &home,
            &t.name,
            |target| Request::Restart { target },
            "restarted",
        ),
        Cmd::Delete(t) => each(
            &home,
            &t.name,
            |target| Request::Delete { target },
            "deleted",
        ),
        Cmd::Reload(args) => {
            let request = if ecofile::is_file(&args.target) {
                let opts = LoadOptions {
                    env: args.env,
                    only: args.only,
                };
                let eco = ecofile::load(std::path::Path::new(&args.target), &opts)?;
                Request::ReloadApps {
                    apps: eco.apps,
                    base_env: std::env::vars().collect(),
                    daemon: Some(eco.daemon),
                }
            } else {
                Request::Reload {
                    target: args.target,
                }
            };
            with_progress(&home, request, "reloaded")
        }
        Cmd::Scale { name, count } => {
            let to = count
                .parse()
                .map_err(|e| anyhow::anyhow!("app \"{name}\": {e}"))?;
            with_progress(&home, Request::Scale { name, to }, "scaled")
        }
        Cmd::List(JsonArg { json: true }) | Cmd::Prettylist => {
            println!("{}", serde_json::to_string_pretty(&list(&home)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List(JsonArg { json: false }) => {
            println!("{}", render::process_table(&list(&home)?));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Jlist => {
            println!("{}", serde_json::to_string(&list(&home)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pid { name } => {
            for pid in pm2::pids(&home, name.as_deref())? {
                println!("{pid}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reset(t) => simple(&home, Request::Reset { target: t.name }, "reset"),
        Cmd::Completions { shell } => {
            pm2::completions(shell);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Env {
            name,
            instance,
            json,
        } => env::run(&home, name, instance, json).map(|()| ExitCode::SUCCESS),
        Cmd::Show { name, json } => {
            let app = show(&home, &name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&app)?);
            } else {
                print!("{}", render::detail(&app));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Logs(args) => logs::run(&home, &args).map(|()| ExitCode::SUCCESS),
        Cmd::Monit(args) => monit::run(&home, &args).map(|()| ExitCode::SUCCESS),
        Cmd::Flush { name } => simple(
            &home,
            Request::Flush {
                target: name.unwrap_or_else(|| "all".into()),
            },
            "flushed",
        ),
        Cmd::Signal { signal, name } => {
            let verb = format!("sent {signal} to");
            simple(
                &home,
                Request::Signal {
                    signal,
                    target: name,
                },
                &verb,
            )
        }
        Cmd::Check { file, env, only } => {
            let eco = ecofile::load(&file, &LoadOptions { env, only })?;
            let names: Vec<&str> = eco.apps.iter().map(|a| a.name.as_str()).collect();
            println!(
                "{}: ok, {} app(s): {}",
                file.display(),
                names.len(),
                names.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Import { file } => import::run(&file),
        Cmd::Export(args) => export::run(&args),
        Cmd::Ping(j) => {
            let Response::Pong {
                pid,
                version,
                binary,
                image_started_ms,
                origin,
                sample_interval_ms,
                metrics,
            } = Client::connect(&home)?.request(&Request::Ping)?
            else {
                bail!("unexpected answer from supd");
            };
            if j.json {
                let pong = serde_json::json!({
                    "pid": pid,
                    "version": version,
                    "binary": binary,
                    "image_started_ms": image_started_ms,
                    "origin": origin,
                    "sample_interval_ms": sample_interval_ms,
                    "metrics": metrics,
                });
                println!("{pong}");
            } else {
                println!("pong: supd {version}, pid {pid} ({origin})");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Save => {
            let Response::Saved { path, apps } = Client::connect(&home)?.request(&Request::Save)?
            else {
                bail!("unexpected answer from supd");
            };
            println!(
                "saved {} app(s) to {}: {}",
                apps.len(),
                path.display(),
                apps.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Resurrect => start::report(&mut Client::connect(&home)?, &Request::Resurrect),
        Cmd::Startup { install } => startup::startup(&home, install),
        Cmd::Unstartup => startup::unstartup(),
        Cmd::Update(j) => update::run(&home, j.json),
        Cmd::Kill => kill(&home),
    }
}

/// The process table.
fn list(home: &Home) -> anyhow::Result<Vec<supd_proto::ProcessInfo>> {
    processes(&mut Client::connect(home)?)
}

/// The process table of the daemon `client` talks to.
fn processes(client: &mut Client) -> anyhow::Result<Vec<supd_proto::ProcessInfo>> {
    match client.request(&Request::List)? {
        Response::List { processes } => Ok(processes),
        _ => bail!("unexpected answer from supd"),
    }
}

/// Everything about one app.
fn show(home: &Home, name: &str) -> anyhow::Result<supd_proto::AppDetail> {
    let request = Request::Show { name: name.into() };
    match Client::connect(home)?.request(&request)? {
        Response::Show { app } => Ok(*app),
        _ => bail!("unexpected answer from supd"),
    }
}

/// A request answered with the names of the apps acted on.
fn simple(home: &Home, request: Request, verb: &str) -> anyhow::Result<ExitCode> {
    let Response::Done { apps } = Client::connect(home)?.request(&request)? else {
        bail!("unexpected answer from supd");
    };
    for app in apps {
        println!("{verb} {app}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `simple` for each app `target` names (every app of an ecosystem file).
fn each(
    home: &Home,
    target: &str,
    request: impl Fn(String) -> Request,
    verb: &str,
) -> anyhow::Result<ExitCode> {
    for target in ecofile::targets(target)? {
        simple(home, request(target), verb)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A long request whose steps are printed as they happen.
fn with_progress(home: &Home, request: Request, verb: &str) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(home)?;
    let response = client.request_with_progress(&request, |step| println!("{step}"))?;
    let Response::Done { apps } = response else {
        bail!("unexpected answer from supd");
    };
    for app in apps {
        println!("{verb} {app}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops every app and the daemon, and waits until the daemon has exited.
fn kill(home: &Home) -> anyhow::Result<ExitCode> {
    let Some(mut client) = Client::connect_existing(home)? else {
        println!("supd is not running");
        return Ok(ExitCode::SUCCESS);
    };
    let Response::Pong { pid, .. } = client.request(&Request::Ping)? else {
        bail!("unexpected answer from supd");
    };
    client.request(&Request::Kill)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(pid) {
        if Instant::now() > deadline {
            bail!("supd (pid {pid}) stopped its apps but has not exited after 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("supd stopped (pid {pid})");
    Ok(ExitCode::SUCCESS)
}

/// Whether `pid` is a live process (a zombie awaiting its parent counts as gone).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
