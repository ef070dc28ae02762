//! Commands kept for PM2 users' hands: `pid` and `completions` (the other
//! PM2 names are aliases of supd's own commands, see `args`).

use clap::CommandFactory;
use supd_proto::Home;

use crate::args::Cli;

/// The pids of the running instances of `name` (of every app if `None`), in
/// instance order, as `pm2 pid` lists them. An instance without a process
/// (stopped, waiting to restart) has no pid and no line. Unlike PM2, which
/// prints an empty line for a name it does not know, an unknown app is an
/// error: a script must not take a typo for a stopped app.
pub fn pids(home: &Home, name: Option<&str>) -> anyhow::Result<Vec<u32>> {
    Ok(match name {
        Some(name) => crate::show(home, name)?
            .instances
            .into_iter()
            .filter_map(|i| i.process.pid)
            .collect(),
        None => crate::list(home)?
            .into_iter()
            .filter_map(|p| p.pid)
            .collect(),
    })
}

/// Writes the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "supctl", &mut std::io::stdout());
}
