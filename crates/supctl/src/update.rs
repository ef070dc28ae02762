//! `supctl update`: the daemon replaces itself with the supd binary now
//! installed, keeping its pid and every app running.
//!
//! On success the daemon re-executes itself and the connection closes
//! without an answer, so the outcome is read from the next image: the same
//! pid, a new image start time, and its origin.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use supd_proto::{Home, Request, Response};

use crate::client::Client;

/// How long the new image may take to answer.
const RESUME_LIMIT: Duration = Duration::from_secs(30);

/// The daemon's identity, as `ping` tells it.
struct Identity {
    pid: u32,
    version: String,
    image_started_ms: u64,
    origin: String,
}

fn identify(client: &mut Client) -> anyhow::Result<Identity> {
    match client.request(&Request::Ping)? {
        Response::Pong {
            pid,
            version,
            image_started_ms,
            origin,
            ..
        } => Ok(Identity {
            pid,
            version,
            image_started_ms,
            origin,
        }),
        _ => bail!("unexpected answer from supd"),
    }
}

/// Runs `supctl update [--json]`.
pub fn run(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let Some(mut client) = Client::connect_existing(home)? else {
        bail!(
            "supd is not running: there is nothing to update (any command starts the installed binary)"
        );
    };
    let before = identify(&mut client)?;
    if let Some(response) = client.request_or_close(&Request::Update, |step| {
        if !json {
            println!("{step}");
        }
    })? {
        bail!("unexpected answer from supd: {response:?}");
    }
    // The next image answers on the same socket once it has taken over.
    let deadline = Instant::now() + RESUME_LIMIT;
    let after = loop {
        let answer = Client::connect_existing(home).and_then(|c| match c {
            Some(mut c) => identify(&mut c).map(Some),
            None => Ok(None),
        });
        match answer {
            Ok(Some(after)) if after.image_started_ms != before.image_started_ms => break after,
            _ if Instant::now() > deadline => bail!(
                "supd did not answer within {RESUME_LIMIT:?} after re-executing itself (see {})",
                home.daemon_log().display()
            ),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if after.pid != before.pid {
        bail!(
            "supd came back with another pid ({} instead of {}): its apps were restarted",
            after.pid,
            before.pid
        );
    }
    let processes = match Client::connect(home)?.request(&Request::List)? {
        Response::List { processes } => processes.iter().filter(|p| p.pid.is_some()).count(),
        _ => bail!("unexpected answer from supd"),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "pid": after.pid,
                "from": before.version,
                "version": after.version,
                "origin": after.origin,
                "processes": processes,
            })
        );
    } else {
        println!(
            "supd updated in place (pid {}, {} -> {}): {processes} process(es) kept running",
            after.pid, before.version, after.version
        );
    }
    Ok(ExitCode::SUCCESS)
}
