//! Moving the apps' stdout and stderr into their log files.
//!
//! Each app has one log thread ([`writer`]) that owns its files
//! (`logs/<app>-out.log`, `logs/<app>-err.log`, opened in append mode) and
//! reads its instances' pipes itself: it cuts what it reads after the last
//! newline and appends whole lines, so lines of different instances never
//! interleave inside the file, and when the disk is slower than the app the
//! thread is busy writing, the pipe fills and the app blocks in `write`
//! (backpressure) instead of lines being dropped. [`AppLog`] is the handle
//! the app's actor holds; it talks to the thread through a queue and an
//! eventfd.
//!
//! The pipes are FIFOs that the instance holds open for reading too
//! ([`AppLog::pipe`]), so an instance outlives a daemon that is killed.
//!
//! The thread also rotates the files ([`file`]): by size (`log_max_size`)
//! between two chunks, so a line is never split, and on a schedule
//! (`log_rotate_interval`), keeping `log_retain` rotated files, gzipped with
//! `log_compress`.
//!
//! Before the daemon re-executes itself (`supctl update`), an app's log is
//! frozen: the thread writes what it has read and gives back the pipes with
//! the incomplete line each holds; the next image attaches the same pipes
//! again, so no byte is lost or written twice.

mod console;
pub mod file;
mod index;
mod lines;
mod pipes;
mod writer;

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use nix::sys::eventfd::{EfdFlags, EventFd};
use supd_config::AppConfig;
use supd_proto::{AppLogs, Home, InstanceLogs};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use self::console::{Console, print as print_on_console};
use self::file::Rotation;
use self::pipes::pipe_name;
pub use self::pipes::{FrozenPipe, Stream, parse_pipe};
use self::writer::{Command, Parked, Writer};

/// What a log file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// stdout (`out_file`).
    Out,
    /// stderr (`error_file`).
    Err,
    /// Both, line by line as they come (`log_file`).
    Both,
}

/// Where an app's logs go: the one owner of the path rule.
///
/// The app's files are `out_file`, `error_file` and `log_file` when set
/// (absolute already), else `SUPD_HOME/logs/NAME-out.log` and
/// `NAME-err.log` (and no combined file). With `merge_logs = false`
/// instance N writes its own files, `-N` before the `.log`
/// ([`AppConfig::instance_file`], PM2's rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    out: PathBuf,
    err: PathBuf,
    both: Option<PathBuf>,
}

impl Files {
    /// The files of `config`.
    pub fn of(home: &Home, config: &AppConfig) -> Files {
        let dir = home.log_dir();
        let name = &config.name;
        Files {
            out: (config.out_file.clone()).unwrap_or_else(|| dir.join(format!("{name}-out.log"))),
            err: (config.error_file.clone()).unwrap_or_else(|| dir.join(format!("{name}-err.log"))),
            both: config.log_file.clone(),
        }
    }

    /// The file of `target`, the app's (`instance` `None`) or one
    /// instance's; `None` when there is none (`log_file` unset).
    pub fn path(&self, target: Target, instance: Option<u32>) -> Option<PathBuf> {
        let base = match target {
            Target::Out => &self.out,
            Target::Err => &self.err,
            Target::Both => self.both.as_ref()?,
        };
        Some(match instance {
            None => base.clone(),
            Some(i) => AppConfig::instance_file(base, i, "log"),
        })
    }
}

/// How an app's logs are laid out and rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    rotation: Rotation,
    /// One file per app (`merge_logs`, the default), or one per instance.
    merge: bool,
    files: Files,
}

impl Layout {
    fn of(home: &Home, config: &AppConfig) -> Layout {
        Layout {
            rotation: Rotation::of(config),
            merge: config.merge_logs,
            files: Files::of(home, config),
        }
    }
}

/// One app's log files: the handle to their thread.
pub struct AppLog {
    /// The app's name, which names its pipes.
    app: String,
    /// Where the default files are.
    home: Home,
    /// Where its pipes are made ([`run_dir`]).
    run_dir: PathBuf,
    /// The thread's queue.
    commands: mpsc::Sender<Command>,
    /// Written after each command, so the thread leaves `poll` to read it.
    wake: Arc<EventFd>,
    /// A problem writing the files (disk full…), for `show`.
    problem: Arc<Mutex<Option<String>>>,
    /// The `log_rotate_interval` timer.
    schedule: Option<JoinHandle<()>>,
    /// The pipes given back by a freeze, until a thaw or the exec.
    parked: Vec<Parked>,
}

impl Rotation {
    /// The rotation settings of an app (its `[daemon]` defaults already
    /// filled in by the registry).
    pub fn of(config: &AppConfig) -> Rotation {
        Rotation {
            max_size: config.log_max_size,
            retain: config.log_retain.unwrap_or(30),
            compress: config.log_compress.unwrap_or(false),
        }
    }
}

/// The log files of an app ([`Files`]): with `merge_logs = false` one
/// set per instance.
pub fn paths(home: &Home, config: &AppConfig) -> AppLogs {
    let files = Files::of(home, config);
    let of = |target, instance| files.path(target, instance);
    let instances = if config.merge_logs {
        Vec::new()
    } else {
        (0..config.instances)
            .map(|i| InstanceLogs {
                instance: i,
                out: of(Target::Out, Some(i)).unwrap_or_default(),
                err: of(Target::Err, Some(i)).unwrap_or_default(),
                log: of(Target::Both, Some(i)),
            })
            .collect()
    };
    AppLogs {
        name: config.name.clone(),
        out: files.out.clone(),
        err: files.err.clone(),
        log: files.both.clone(),
        instances,
    }
}

impl AppLog {
    /// Opens (creating) the files of an app and starts its log thread.
    /// The thread ends when the `AppLog` is gone and every pipe it reads
    /// has reached its end.
    pub fn open(home: &Home, config: &AppConfig) -> io::Result<AppLog> {
        let name = &config.name;
        // Made and checked at start; made again, and checked, if removed since.
        crate::home::ensure_folder(&home.log_dir())?;
        crate::home::ensure_folder(&crate::home::run_dir(home))?;
        let problem = Arc::new(Mutex::new(None));
        let writer = Writer::new(home, config, problem.clone())?;
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let (commands, queue) = mpsc::channel();
        let thread_wake = wake.clone();
        std::thread::Builder::new()
            .name(format!("log-{name}"))
            .spawn(move || writer.run(queue, &thread_wake))?;
        let mut log = AppLog {
            app: name.clone(),
            home: home.clone(),
            run_dir: crate::home::run_dir(home),
            commands,
            wake,
            problem,
            schedule: None,
            parked: Vec::new(),
        };
        log.arm(config);
        Ok(log)
    }

    /// Hands a command to the thread and wakes it.
    fn send(&self, command: Command) {
        send(&self.commands, &self.wake, command);
    }

    /// Applies a new config's rotation settings.
    pub fn configure(&mut self, config: &AppConfig) {
        self.send(Command::Configure(Layout::of(&self.home, config)));
        self.arm(config);
    }

    /// (Re-)arms the `log_rotate_interval` timer.
    fn arm(&mut self, config: &AppConfig) {
        if let Some(old) = self.schedule.take() {
            old.abort();
        }
        let Some(cron) = config
            .log_rotate_interval
            .as_deref()
            .and_then(|e| supd_config::rotate_schedule(e).ok())
        else {
            return;
        };
        let (commands, wake) = (self.commands.clone(), self.wake.clone());
        self.schedule = Some(tokio::spawn(async move {
            loop {
                let now = chrono::Local::now();
                let Some(wait) = cron
                    .find_next_occurrence(&now, false)
                    .ok()
                    .and_then(|t| (t - now).to_std().ok())
                else {
                    return;
                };
                tokio::time::sleep(wait).await;
                send(&commands, &wake, Command::Rotate);
            }
        }));
    }

    /// The shared slot where the thread reports a problem (disk full…).
    pub fn problem(&self) -> Arc<Mutex<Option<String>>> {
        self.problem.clone()
    }

    /// Makes the pipe for one stream of a new instance, starts copying it
    /// into the files, and returns the end the instance writes to.
    ///
    /// The pipe is a FIFO in [`run_dir`], unlinked as soon as both ends are
    /// open: its name stays visible in `/proc/PID/fd`, which is how a daemon
    /// started after a crash finds the instance. The instance's end is
    /// opened read-write, so the instance itself counts as a reader: if the
    /// daemon dies, its writes never fail with EPIPE or raise SIGPIPE; once
    /// the pipe is full they block until a new daemon takes over. The
    /// daemon's end still sees EOF when the last process holding the
    /// instance's end exits, as with an ordinary pipe.
    pub fn pipe(
        &mut self,
        stream: Stream,
        instance: u32,
        date_format: Option<String>,
    ) -> io::Result<OwnedFd> {
        let path = self.run_dir.join(pipe_name(&self.app, instance, stream));
        // Left behind if a daemon died right here.
        let _ = fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        // Neither open blocks: a read-write open never waits for a peer, and
        // the reader then has a writer.
        let theirs = OpenOptions::new().read(true).write(true).open(&path);
        let ours = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path);
        let _ = fs::remove_file(&path);
        self.attach(stream, instance, ours?.into(), date_format);
        Ok(theirs?.into())
    }

    /// Starts copying a child's pipe (read end, non-blocking) into the file
    /// of `stream`, prefixing each line with the time in `date_format` when
    /// set.
    pub fn attach(
        &mut self,
        stream: Stream,
        instance: u32,
        fd: OwnedFd,
        date_format: Option<String>,
    ) {
        self.send(Command::Attach(Parked {
            stream,
            instance,
            fd,
            pending: Vec::new(),
            date_format,
        }));
    }

    /// Stops reading the pipes and waits until everything read from them is
    /// written; the pipes are held for [`AppLog::frozen`] and
    /// [`AppLog::thaw`].
    pub async fn freeze(&mut self) {
        let (reply, parked) = oneshot::channel();
        self.send(Command::Freeze(reply));
        if let Ok(parked) = parked.await {
            self.parked.extend(parked);
        }
    }

    /// The pipes a freeze holds, for the handover.
    pub fn frozen(&self) -> Vec<FrozenPipe> {
        use std::os::fd::AsRawFd;
        self.parked
            .iter()
            .map(|p| FrozenPipe {
                stream: p.stream,
                instance: p.instance,
                fd: p.fd.as_raw_fd(),
                pending: p.pending.clone(),
            })
            .collect()
    }

    /// Reads the frozen pipes again (the handover did not happen).
    pub fn thaw(&mut self) {
        for parked in std::mem::take(&mut self.parked) {
            self.send(Command::Attach(parked));
        }
    }

    /// Goes on reading a pipe handed over by the previous image.
    pub fn resume(&mut self, pipe: FrozenPipe, fd: OwnedFd, date_format: Option<String>) {
        self.send(Command::Attach(Parked {
            stream: pipe.stream,
            instance: pipe.instance,
            fd,
            pending: pipe.pending,
            date_format,
        }));
    }

    /// Empties the app's files; an error names each one that could not be.
    pub async fn truncate(&self) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Truncate(reply));
        done.await
            .map_err(|_| "its log thread stopped".to_string())?
    }
}

impl Drop for AppLog {
    fn drop(&mut self) {
        if let Some(timer) = self.schedule.take() {
            timer.abort();
        }
        self.send(Command::Close);
    }
}

/// Queues `command` for a log thread and wakes it.
fn send(commands: &mpsc::Sender<Command>, wake: &EventFd, command: Command) {
    // A thread that stopped (it could not poll) has nothing left to do.
    if commands.send(command).is_ok() {
        let _ = wake.write(1);
    }
}
