//! Talking to the daemon: connect, starting it first if needed, and one
//! request/response round trip, each bounded in time.
//!
//! A stopped or wedged daemon must not hang a command without a word: the
//! connect and every reply frame are bounded by the timeout (`--timeout`,
//! `SUPCTL_TIMEOUT`, 10 s by default). A long operation is not cut: the
//! daemon sends a `working` frame every second while a request runs, so
//! the bound is on the silence between frames, not on the whole command.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use supd_proto::frame::{encode, read_frame};
use supd_proto::{FrameError, Home, Request, Response};

/// How long to wait for a daemon we started to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound on a connect and on each reply frame, unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound chosen on the command line (`None`: wait for ever); set once
/// by `main` before any connection, read by every connection.
static TIMEOUT: OnceLock<Option<Duration>> = OnceLock::new();

/// Sets the bound on a connect and on each reply frame (`None`: none).
pub fn set_timeout(timeout: Option<Duration>) {
    let _ = TIMEOUT.set(timeout);
}

fn timeout() -> Option<Duration> {
    *TIMEOUT.get_or_init(|| Some(DEFAULT_TIMEOUT))
}

/// A connection to the daemon.
pub struct Client {
    stream: UnixStream,
    home: Home,
}

impl Client {
    /// Connects to the running daemon, if there is one.
    pub fn connect_existing(home: &Home) -> anyhow::Result<Option<Client>> {
        match connect_within(home, timeout()) {
            Ok(stream) => Ok(Some(Client {
                stream,
                home: home.clone(),
            })),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                Ok(None)
            }
            Err(e) if is_timeout(&e) => Err(no_answer(home)),
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
        if let Err(e) = self.send(request) {
            // A daemon that refused us (another uid, over its budget) said
            // why before closing: that beats "Broken pipe".
            if let Ok(Response::Error { message }) = read_frame(&mut self.stream) {
                bail!(message);
            }
            return Err(e).context("cannot send the request to supd");
        }
        loop {
            match read_frame(&mut self.stream) {
                Ok(Response::Working) => {}
                Ok(Response::Progress { message }) => on_progress(&message),
                Ok(Response::Error { message }) => bail!(message),
                Ok(other) => return Ok(Some(other)),
                Err(FrameError::Closed) => return Ok(None),
                Err(FrameError::Io(e)) if is_timeout(&e) => return Err(no_answer(&self.home)),
                Err(e) => return Err(e).context("supd did not answer"),
            }
        }
    }

    /// Writes one frame; never raises SIGPIPE (a closed daemon is an error).
    fn send(&mut self, request: &Request) -> anyhow::Result<()> {
        let frame = encode(request)?;
        let mut sent = 0;
        while sent < frame.len() {
            let flags = MsgFlags::MSG_NOSIGNAL;
            match socket::send(self.stream.as_raw_fd(), &frame[sent..], flags) {
                Ok(n) => sent += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) if is_timeout(&io::Error::from(e)) => return Err(no_answer(&self.home)),
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
        Ok(())
    }
}

/// Connects to the daemon's socket, retrying while its backlog is full,
/// for at most `limit`; the stream then bounds each read and write by it.
fn connect_within(home: &Home, limit: Option<Duration>) -> io::Result<UnixStream> {
    let deadline = limit.map(|l| Instant::now() + l);
    let addr = UnixAddr::new(&home.socket())?;
    loop {
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let fd = socket::socket(AddressFamily::Unix, SockType::Stream, flags, None)?;
        match socket::connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(limit)?;
                stream.set_write_timeout(limit)?;
                return Ok(stream);
            }
            // A full backlog: the daemon is not accepting (yet).
            Err(nix::errno::Errno::EAGAIN) => {
                if deadline.is_some_and(|d| Instant::now() > d) {
                    return Err(ErrorKind::TimedOut.into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// The one line for a daemon that does not answer in time, with what to try.
fn no_answer(home: &Home) -> anyhow::Error {
    let within = timeout().map_or_else(String::new, |t| format!(" within {t:?}"));
    let socket = home.socket();
    let pid = fs::read_to_string(home.pid_file())
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    let Some(pid) = pid else {
        return anyhow::anyhow!(
            "supd at {} did not answer{within}; see {}",
            socket.display(),
            home.daemon_log().display()
        );
    };
    if stopped(pid) {
        anyhow::anyhow!(
            "supd (pid {pid}) at {} did not answer{within}: it is stopped (SIGSTOP or a debugger); resume it with `kill -CONT {pid}`",
            socket.display()
        )
    } else {
        anyhow::anyhow!(
            "supd (pid {pid}) at {} did not answer{within}; is it wedged? See {}, then try `supctl kill` or `kill {pid}` (wait longer with --timeout or SUPCTL_TIMEOUT)",
            socket.display(),
            home.daemon_log().display()
        )
    }
}

/// Whether `pid` is stopped by a signal or traced.
fn stopped(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('T' | 't')))
    })
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
