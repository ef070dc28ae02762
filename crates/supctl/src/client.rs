//! Talking to the daemon: connect, starting it first if needed, and one
//! request/response round trip.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use supd_proto::frame::{read_frame, write_frame};
use supd_proto::{FrameError, Home, Request, Response};

/// How long to wait for a daemon we started to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the daemon.
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects to the running daemon, if there is one.
    pub fn connect_existing(home: &Home) -> anyhow::Result<Option<Client>> {
        match UnixStream::connect(home.socket()) {
            Ok(stream) => Ok(Some(Client { stream })),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                Ok(None)
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot connect to {}", home.socket().display()))
            }
        }
    }

    /// Connects, starting a daemon first if none is running.
    pub fn connect(home: &Home) -> anyhow::Result<Client> {
        if let Some(client) = Client::connect_existing(home)? {
            return Ok(client);
        }
        start_daemon(home)
    }

    /// Sends one request and returns the answer; an error answer becomes an `Err`.
    pub fn request(&mut self, request: &Request) -> anyhow::Result<Response> {
        self.request_with_progress(request, |_| {})
    }

    /// Like [`Client::request`], passing each progress line of a long
    /// operation to `on_progress` as it arrives.
    pub fn request_with_progress(
        &mut self,
        request: &Request,
        on_progress: impl FnMut(&str),
    ) -> anyhow::Result<Response> {
        match self.request_or_close(request, on_progress)? {
            Some(response) => Ok(response),
            None => bail!("supd did not answer: it closed the connection"),
        }
    }

    /// Like [`Client::request_with_progress`], for a request the daemon may
    /// end by closing the connection (`update` re-executes it): `None` then.
    pub fn request_or_close(
        &mut self,
        request: &Request,
        mut on_progress: impl FnMut(&str),
    ) -> anyhow::Result<Option<Response>> {
        write_frame(&mut self.stream, request).context("cannot send the request to supd")?;
        loop {
            match read_frame(&mut self.stream) {
                Ok(Response::Progress { message }) => on_progress(&message),
                Ok(Response::Error { message }) => bail!(message),
                Ok(other) => return Ok(Some(other)),
                Err(FrameError::Closed) => return Ok(None),
                Err(e) => return Err(e).context("supd did not answer"),
            }
        }
    }
}

/// The `supd` binary: next to this `supctl`, else from PATH.
fn daemon_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("supd")))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("supd"))
}

/// Starts a detached daemon (own session, output to `supd.log`) and waits
/// until it answers. If another supctl started one at the same moment, the
/// lock lets only one live, and we connect to that one.
fn start_daemon(home: &Home) -> anyhow::Result<Client> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home.dir())
        .with_context(|| format!("cannot create {}", home.dir().display()))?;
    let log_path = home.daemon_log();
    // Never through a link planted at its name (the daemon then refuses
    // a home that is not its own, and says so in this file).
    let log = supd_proto::home::open_no_symlink(
        &log_path,
        OpenOptions::new().create(true).append(true),
        0,
    )
    .with_context(|| format!("cannot open {}", log_path.display()))?;
    let binary = daemon_binary();
    let mut cmd = Command::new(&binary);
    cmd.env("SUPD_HOME", home.dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start the daemon {}", binary.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut exited_at = None;
    loop {
        if let Some(client) = Client::connect_existing(home)? {
            return Ok(client);
        }
        if exited_at.is_none() && matches!(child.try_wait(), Ok(Some(status)) if !status.success())
        {
            exited_at = Some(Instant::now());
        }
        // A daemon that failed at once: allow a moment for a concurrent one to answer.
        let gave_up = exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1));
        if gave_up || Instant::now() > deadline {
            let tail = fs::read_to_string(&log_path).unwrap_or_default();
            let last = tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            bail!(
                "the daemon did not start (see {}): {last}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
