//! `supctl env NAME [INSTANCE]`: the environment an instance was spawned
//! with, as the daemon computes it (PM2's `pm2 env`).

use std::collections::BTreeMap;

use anyhow::bail;
use supd_proto::{Home, Request, Response};

use crate::client::Client;

/// Prints the environment of instance `instance` of `name`: `KEY=value`
/// lines in name order, or one JSON object.
pub fn run(home: &Home, name: String, instance: u32, json: bool) -> anyhow::Result<()> {
    let env = fetch(home, name, instance)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&env)?);
    } else {
        for (key, value) in &env {
            println!("{key}={value}");
        }
    }
    Ok(())
}

/// The daemon's answer.
fn fetch(home: &Home, name: String, instance: u32) -> anyhow::Result<BTreeMap<String, String>> {
    match Client::connect(home)?.request(&Request::Env { name, instance })? {
        Response::Env { env } => Ok(env),
        _ => bail!("unexpected answer from supd"),
    }
}
