//! Moving the apps' stdout and stderr into their log files.
//!
//! Each app has one writer thread that owns its two files
//! (`logs/<app>-out.log`, `logs/<app>-err.log`, opened in append mode). Each
//! instance pipe has a reader task that cuts what it reads at the last
//! newline and sends whole lines, so lines of different instances never
//! interleave inside the file. The channel is bounded: when the disk is
//! slower than the app, readers stop reading and the app blocks in `write`
//! (backpressure) instead of lines being dropped.
//!
//! The pipes are FIFOs that the instance holds open for reading too
//! ([`AppLog::pipe`]), so an instance outlives a daemon that is killed.
//!
//! The writer also rotates the files ([`file`]): by size (`log_max_size`)
//! between two chunks, so a line is never split, and on a schedule
//! (`log_rotate_interval`), keeping `log_retain` rotated files, gzipped with
//! `log_compress`.
//!
//! Before the daemon re-executes itself (`supctl update`), an app's log is
//! frozen: readers stop and give back their pipes with the incomplete line
//! they hold, and the writer finishes what it was sent; the next image
//! attaches the same pipes again, so no byte is lost or written twice.

mod buffers;
pub mod file;
mod index;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use supd_config::AppConfig;

use supd_proto::{AppLogs, Home, InstanceLogs};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use self::buffers::{Buffers, READ_CHUNK};
use self::file::{LogFile, Rotation};
use crate::handover::FrozenPipe;

/// Chunks in flight per app before readers wait for the disk.
const CHANNEL_DEPTH: usize = 32;
/// The capacity asked for each app pipe.
const PIPE_SIZE: usize = 1024 * 1024;
/// A line longer than this is cut, so one endless line cannot grow memory.
const MAX_LINE: usize = 1 << 20;

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Stream {
    /// stdout → `-out.log`.
    Out,
    /// stderr → `-err.log`.
    Err,
}

enum LogMsg {
    /// Whole lines of one instance's stream, and the `log_date_format`
    /// prefix of the moment they were read (stamped by the writer thread,
    /// so reading the pipe and stamping overlap).
    Lines(Stream, u32, Vec<u8>, Option<String>),
    Truncate(oneshot::Sender<io::Result<()>>),
    /// Answered once everything sent before it is written.
    Sync(oneshot::Sender<()>),
    Rotate,
    Configure(Layout),
}

/// How an app's logs are laid out and rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    rotation: Rotation,
    /// One file per app (`merge_logs`, the default), or one per instance.
    merge: bool,
}

impl Layout {
    fn of(config: &AppConfig) -> Layout {
        Layout {
            rotation: Rotation::of(config),
            merge: config.merge_logs,
        }
    }
}

/// One app's log files and the channel to their writer thread.
pub struct AppLog {
    /// The app's name, which names its pipes.
    app: String,
    /// Where its pipes are made ([`run_dir`]).
    run_dir: PathBuf,
    tx: mpsc::Sender<LogMsg>,
    /// A problem writing the files (disk full…), for `show`.
    problem: Arc<Mutex<Option<String>>>,
    /// The `log_rotate_interval` timer.
    schedule: Option<JoinHandle<()>>,
    /// Set to make every reader give its pipe back.
    freeze: watch::Sender<bool>,
    /// The readers; one that reached EOF has nothing to give back.
    readers: Vec<JoinHandle<Option<Parked>>>,
    /// The pipes given back by a freeze, until a thaw or the exec.
    parked: Vec<Parked>,
    /// Chunk buffers going round between the readers and the writer.
    buffers: Arc<Buffers>,
}

/// A pipe whose reader stopped for a freeze.
struct Parked {
    stream: Stream,
    instance: u32,
    fd: OwnedFd,
    /// The start of a line not complete yet.
    pending: Vec<u8>,
    date_format: Option<String>,
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

/// The log files of an app: `NAME-out.log`/`NAME-err.log`, and with
/// `merge_logs = false` one pair per instance, `NAME-out-N.log`.
pub fn paths(home: &Home, config: &AppConfig) -> AppLogs {
    let name = &config.name;
    let instances = if config.merge_logs {
        Vec::new()
    } else {
        (0..config.instances)
            .map(|i| {
                let (out, err) = file_pair(home, name, Some(i));
                InstanceLogs {
                    instance: i,
                    out,
                    err,
                }
            })
            .collect()
    };
    let (out, err) = file_pair(home, name, None);
    AppLogs {
        name: name.clone(),
        out,
        err,
        instances,
    }
}

/// `SUPD_HOME/run`: where instance pipes are made (and unlinked at once).
pub fn run_dir(home: &Home) -> PathBuf {
    home.dir().join("run")
}

/// The name of an instance's pipe in [`run_dir`]: `<app>.<slot>.out|err`.
fn pipe_name(app: &str, instance: u32, stream: Stream) -> String {
    let ext = match stream {
        Stream::Out => "out",
        Stream::Err => "err",
    };
    format!("{app}.{instance}.{ext}")
}

/// The app, instance and stream of a pipe, from where `/proc/PID/fd/N`
/// points (`<run_dir>/<app>.<slot>.out (deleted)`); `None` if `target` is not
/// one of the pipes in `run_dir`.
pub fn parse_pipe(run_dir: &Path, target: &Path) -> Option<(String, u32, Stream)> {
    let name = target.strip_prefix(run_dir).ok()?.to_str()?;
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    let mut parts = name.rsplitn(3, '.');
    let stream = match parts.next()? {
        "out" => Stream::Out,
        "err" => Stream::Err,
        _ => return None,
    };
    let instance = parts.next()?.parse().ok()?;
    let app = parts.next().filter(|a| !a.is_empty() && !a.contains('/'))?;
    Some((app.to_string(), instance, stream))
}

/// The out and err files of an app, or of one of its instances.
fn file_pair(home: &Home, name: &str, instance: Option<u32>) -> (PathBuf, PathBuf) {
    let dir = home.log_dir();
    let suffix = instance.map_or(String::new(), |i| format!("-{i}"));
    (
        dir.join(format!("{name}-out{suffix}.log")),
        dir.join(format!("{name}-err{suffix}.log")),
    )
}

impl AppLog {
    /// Opens (creating) the files of an app and starts its writer thread.
    /// The thread ends when the `AppLog` and every reader are gone.
    pub fn open(home: &Home, config: &AppConfig) -> io::Result<AppLog> {
        let name = &config.name;
        fs::create_dir_all(home.log_dir())?;
        fs::create_dir_all(run_dir(home))?;
        let problem = Arc::new(Mutex::new(None));
        let buffers = Arc::new(Buffers::default());
        let mut writer = Writer {
            home: home.clone(),
            app: name.clone(),
            layout: Layout::of(config),
            files: HashMap::new(),
            problem: problem.clone(),
            buffers: buffers.clone(),
            stamped: Vec::new(),
        };
        // The app-level files exist from the start, so `logs` finds them.
        if writer.layout.merge {
            writer.file(Stream::Out, 0)?;
            writer.file(Stream::Err, 0)?;
        }
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        std::thread::Builder::new()
            .name(format!("log-{name}"))
            .spawn(move || writer.run(rx))?;
        let mut log = AppLog {
            app: name.clone(),
            run_dir: run_dir(home),
            tx,
            problem,
            schedule: None,
            freeze: watch::Sender::new(false),
            readers: Vec::new(),
            parked: Vec::new(),
            buffers,
        };
        log.arm(config);
        Ok(log)
    }

    /// Applies a new config's rotation settings.
    pub fn configure(&mut self, config: &AppConfig) {
        // Through a task: a full channel (a flooding app) must delay the
        // new settings, not lose them.
        let tx = self.tx.clone();
        let layout = Layout::of(config);
        tokio::spawn(async move {
            let _ = tx.send(LogMsg::Configure(layout)).await;
        });
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
        let tx = self.tx.clone();
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
                if tx.send(LogMsg::Rotate).await.is_err() {
                    return;
                }
            }
        }));
    }

    /// The shared slot where the writer reports a problem (disk full…).
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

    /// Starts copying a child's pipe into the file of `stream`, prefixing
    /// each line with the time in `date_format` when set.
    pub fn attach(
        &mut self,
        stream: Stream,
        instance: u32,
        fd: OwnedFd,
        date_format: Option<String>,
    ) {
        self.reattach(Parked {
            stream,
            instance,
            fd,
            pending: Vec::new(),
            date_format,
        });
    }

    /// Goes on reading a pipe, after the `pending` bytes already read from it.
    fn reattach(&mut self, parked: Parked) {
        self.readers.retain(|r| !r.is_finished());
        let tx = self.tx.clone();
        let frozen = self.freeze.subscribe();
        let buffers = self.buffers.clone();
        self.readers.push(tokio::spawn(async move {
            pump(parked, tx, frozen, &buffers)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("log pipe read failed: {e}");
                    None
                })
        }));
    }

    /// Stops every reader and waits until the writer has written all they
    /// read; their pipes are held for [`AppLog::frozen`] and
    /// [`AppLog::thaw`].
    pub async fn freeze(&mut self) {
        self.freeze.send_replace(true);
        for reader in std::mem::take(&mut self.readers) {
            if let Ok(Some(parked)) = reader.await {
                self.parked.push(parked);
            }
        }
        let (ack, done) = oneshot::channel();
        if self.tx.send(LogMsg::Sync(ack)).await.is_ok() {
            let _ = done.await;
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
        self.freeze.send_replace(false);
        for parked in std::mem::take(&mut self.parked) {
            self.reattach(parked);
        }
    }

    /// Goes on reading a pipe handed over by the previous image.
    pub fn resume(&mut self, pipe: FrozenPipe, fd: OwnedFd, date_format: Option<String>) {
        self.reattach(Parked {
            stream: pipe.stream,
            instance: pipe.instance,
            fd,
            pending: pipe.pending,
            date_format,
        });
    }

    /// Empties both files.
    pub async fn truncate(&self) -> io::Result<()> {
        let (ack, done) = oneshot::channel();
        let gone = || io::Error::other("log writer stopped");
        self.tx
            .send(LogMsg::Truncate(ack))
            .await
            .map_err(|_| gone())?;
        done.await.map_err(|_| gone())?
    }
}

impl Drop for AppLog {
    fn drop(&mut self) {
        if let Some(timer) = self.schedule.take() {
            timer.abort();
        }
    }
}

/// The writer thread's state: the only code that touches the app's files.
struct Writer {
    home: Home,
    app: String,
    layout: Layout,
    /// Open files by stream and instance (`None` for the app's merged files).
    files: HashMap<(Stream, Option<u32>), LogFile>,
    problem: Arc<Mutex<Option<String>>>,
    /// Where written chunks go back to the readers.
    buffers: Arc<Buffers>,
    /// Reused for chunks with their `log_date_format` prefixes.
    stamped: Vec<u8>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<LogMsg>) {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                LogMsg::Lines(stream, instance, bytes, prefix) => {
                    match prefix {
                        Some(prefix) => {
                            let mut stamped = std::mem::take(&mut self.stamped);
                            stamp(&bytes, &prefix, &mut stamped);
                            self.write(stream, instance, &stamped);
                            self.stamped = stamped;
                        }
                        None => self.write(stream, instance, &bytes),
                    }
                    self.buffers.give(bytes);
                }
                LogMsg::Truncate(ack) => {
                    let result = self.files.values_mut().try_for_each(LogFile::truncate);
                    let _ = ack.send(result);
                }
                LogMsg::Sync(ack) => {
                    let _ = ack.send(());
                }
                LogMsg::Rotate => {
                    for file in self.files.values_mut() {
                        file.rotate(&self.layout.rotation, &self.app);
                    }
                }
                LogMsg::Configure(layout) => self.layout = layout,
            }
        }
    }

    fn write(&mut self, stream: Stream, instance: u32, bytes: &[u8]) {
        match self.file(stream, instance) {
            Ok(key) => {
                if let Some(file) = self.files.get_mut(&key) {
                    file.write(bytes, instance, &self.layout.rotation, &self.app);
                }
            }
            Err(e) => tracing::error!(app = %self.app, "cannot open a log file: {e}"),
        }
    }

    /// Opens, on first use, the file an instance's stream goes to; its key.
    fn file(&mut self, stream: Stream, instance: u32) -> io::Result<(Stream, Option<u32>)> {
        let key = (stream, (!self.layout.merge).then_some(instance));
        if !self.files.contains_key(&key) {
            let (out, err) = file_pair(&self.home, &self.app, key.1);
            let path = if stream == Stream::Out { out } else { err };
            self.files.insert(
                key,
                LogFile::open(path, key.1.is_none(), self.problem.clone())?,
            );
        }
        Ok(key)
    }
}

/// Reads one pipe until EOF, sending whole lines; or until a freeze, then
/// gives the pipe back with the incomplete line it holds.
async fn pump(
    parked: Parked,
    tx: mpsc::Sender<LogMsg>,
    mut freeze: watch::Receiver<bool>,
    buffers: &Buffers,
) -> io::Result<Option<Parked>> {
    let Parked {
        stream,
        instance,
        fd,
        mut pending,
        date_format,
    } = parked;
    enlarge_pipe(&fd);
    let mut pipe = pipe::Receiver::from_owned_fd(fd)?;
    let prefix = || {
        date_format
            .as_deref()
            .map(|f| format!("{}: ", chrono::Local::now().format(f)))
    };
    loop {
        // Read straight into the buffer that is sent on: whole lines travel
        // to the writer without a copy.
        if pending.capacity() - pending.len() < READ_CHUNK / 4 {
            pending.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            biased;
            () = frozen(&mut freeze) => {
                let fd = pipe.into_nonblocking_fd()?;
                return Ok(Some(Parked { stream, instance, fd, pending, date_format }));
            }
            // Cancel safe: an unfinished read has taken nothing.
            read = pipe.read_buf(&mut pending) => read?,
        };
        if read == 0 {
            break;
        }
        let cut = match memchr::memrchr(b'\n', &pending) {
            Some(pos) => pos + 1,
            None if pending.len() >= MAX_LINE => {
                pending.push(b'\n');
                pending.len()
            }
            None => continue,
        };
        // The incomplete line goes on in a recycled buffer.
        let mut next = buffers.take();
        next.extend_from_slice(&pending[cut..]);
        pending.truncate(cut);
        let lines = std::mem::replace(&mut pending, next);
        if tx
            .send(LogMsg::Lines(stream, instance, lines, prefix()))
            .await
            .is_err()
        {
            return Ok(None);
        }
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        let _ = tx
            .send(LogMsg::Lines(stream, instance, pending, prefix()))
            .await;
    }
    Ok(None)
}

/// Resolves once the log is frozen (never, if the log is gone).
async fn frozen(freeze: &mut watch::Receiver<bool>) {
    if freeze.wait_for(|f| *f).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Grows the pipe to [`PIPE_SIZE`] (from Linux's 64 KiB), so a chatty app
/// rarely blocks while the reader is busy; best effort.
fn enlarge_pipe(fd: &OwnedFd) {
    use nix::fcntl::{FcntlArg, fcntl};
    let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as libc::c_int));
}

/// Writes into `out` every line of `lines` (which ends with a newline)
/// prefixed with `<time>: `, as PM2 does with `log_date_format`.
fn stamp(lines: &[u8], prefix: &str, out: &mut Vec<u8>) {
    let count = memchr::memchr_iter(b'\n', lines).count();
    out.clear();
    out.reserve(lines.len() + count * prefix.len());
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', lines) {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(&lines[start..=end]);
        start = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_prefixes_each_line() {
        let mut out = b"stale".to_vec();
        stamp(b"a\nb\n", "T: ", &mut out);
        assert_eq!(out, b"T: a\nT: b\n");
    }

    #[test]
    fn pipe_names_round_trip() {
        let run = Path::new("/h/run");
        let target = run.join(format!(
            "{} (deleted)",
            pipe_name("api.v2-x", 3, Stream::Err)
        ));
        assert_eq!(
            parse_pipe(run, &target),
            Some(("api.v2-x".to_string(), 3, Stream::Err))
        );
        assert_eq!(
            parse_pipe(run, &run.join("web.0.out")).unwrap().2,
            Stream::Out
        );
        for other in [
            "/h/logs/web.0.out",
            "/h/run/web.x.out",
            "/h/run/.0.out",
            "pipe:[12]",
        ] {
            assert_eq!(parse_pipe(run, Path::new(other)), None, "{other}");
        }
    }
}
