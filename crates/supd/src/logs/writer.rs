//! An app's log thread: the only code that reads the app's pipes and
//! touches its files.
//!
//! One thread per app waits in `poll(2)` on every pipe of its instances and
//! on a wake-up eventfd for [`Command`]s. Each time a pipe is readable it
//! reads one chunk into that pipe's own buffer, cuts it after the last
//! newline and appends the whole lines to the file, so lines of different
//! instances never interleave; the incomplete line stays in the buffer for
//! the next read. Reading and writing in the same thread is what `cat`
//! does: the app and this thread run side by side, the buffer is reused
//! for every chunk, and nothing is handed between threads. When the disk is
//! slower than the app, this thread is in `write` and reads nothing, so the
//! pipe fills and the app blocks in its own `write` (backpressure); other
//! apps have their own threads.

use std::collections::HashMap;
use std::io::{self, PipeReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::EventFd;
use supd_config::{AppConfig, DEV_NULL};
use supd_proto::Home;
use tokio::sync::oneshot;

use super::file::LogFile;
use super::lines::{FIRST_CHUNK, LineBuf, stamp};
use super::{Layout, Stream, Target};

/// The capacity asked for each app pipe.
const PIPE_SIZE: usize = 1024 * 1024;

/// What the [`AppLog`](super::AppLog) handle asks of the thread; it
/// writes the eventfd after each, so a thread waiting in `poll` sees it.
pub enum Command {
    /// Start reading a pipe.
    Attach(Parked),
    /// Stop reading every pipe and give them back, once everything read
    /// from them is written.
    Freeze(oneshot::Sender<Vec<Parked>>),
    /// Empty every file (`supctl flush`); the answer names each file that
    /// could not be emptied.
    Truncate(oneshot::Sender<Result<(), String>>),
    /// Rotate every file now (`log_rotate_interval`).
    Rotate,
    /// New rotation settings and layout (files whose path changed are
    /// closed, and the new ones opened at their next line).
    Configure(Layout),
    /// The handle is gone: end once every pipe has ended.
    Close,
}

/// A pipe that is not being read: before it is attached, or given back by
/// a freeze.
pub struct Parked {
    /// Which file its lines go to.
    pub stream: Stream,
    /// The instance writing to it.
    pub instance: u32,
    /// The read end (non-blocking).
    pub fd: OwnedFd,
    /// Bytes read but not written: the start of an incomplete line.
    pub pending: Vec<u8>,
    /// The `log_date_format` each line is prefixed with, if any.
    pub date_format: Option<String>,
}

/// A pipe being read, with the buffer its lines are cut in.
struct Source {
    stream: Stream,
    instance: u32,
    pipe: PipeReader,
    /// What was read and not yet written: the incomplete line.
    lines: LineBuf,
    date_format: Option<String>,
}

impl Source {
    fn new(parked: Parked) -> Source {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let Parked {
            stream,
            instance,
            fd,
            pending,
            date_format,
        } = parked;
        // Best effort: a bigger pipe lets a chatty app run on while a chunk
        // is written; every read end is opened non-blocking already.
        let _ = fcntl(&fd, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as libc::c_int));
        let _ = fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        Source {
            stream,
            instance,
            pipe: PipeReader::from(fd),
            lines: LineBuf::new(pending),
            date_format,
        }
    }

    fn park(self) -> Parked {
        Parked {
            stream: self.stream,
            instance: self.instance,
            fd: self.pipe.into(),
            pending: self.lines.into_pending(),
            date_format: self.date_format,
        }
    }

    /// The `log_date_format` prefix for lines read now.
    fn prefix(&self) -> Option<String> {
        self.date_format
            .as_deref()
            .map(|f| format!("{}: ", chrono::Local::now().format(f)))
    }
}

/// What one read of a pipe gave.
enum Got {
    /// Whole lines: `buf[..cut]`.
    Lines(usize),
    /// Nothing whole yet (or nothing at all).
    Nothing,
    /// The pipe's writers are all gone.
    End,
}

/// The thread's state.
pub struct Writer {
    /// The app's name, for messages.
    app: String,
    layout: Layout,
    /// Open files by what they hold and instance (`None` for the app's
    /// merged files).
    files: HashMap<(Target, Option<u32>), LogFile>,
    /// Shared with `show`: the current problem writing the files.
    problem: Arc<Mutex<Option<String>>>,
    /// Reused for chunks with their `log_date_format` prefixes.
    stamped: Vec<u8>,
    /// The handle is gone: the thread ends once every pipe has ended.
    closed: bool,
}

impl Writer {
    /// The state of `config`'s log thread. Its files (each instance's
    /// without `merge_logs`) are created now, so `logs` finds them before
    /// the first line and a path that cannot be written is an error when
    /// the app starts, not a lost log later.
    pub fn new(
        home: &Home,
        config: &AppConfig,
        problem: Arc<Mutex<Option<String>>>,
    ) -> io::Result<Writer> {
        let mut writer = Writer {
            app: config.name.clone(),
            layout: Layout::of(home, config),
            files: HashMap::new(),
            problem,
            stamped: Vec::new(),
            closed: false,
        };
        let instances = if writer.layout.merge {
            1
        } else {
            config.instances
        };
        for instance in 0..instances {
            for target in [Target::Out, Target::Err, Target::Both] {
                writer.file(target, instance)?;
            }
        }
        Ok(writer)
    }

    /// Serves `commands` and the pipes until the handle is gone and every
    /// pipe has reached its end.
    pub fn run(mut self, commands: Receiver<Command>, wake: &EventFd) {
        let mut sources: Vec<Source> = Vec::new();
        let mut ready = Vec::new();
        loop {
            loop {
                match commands.try_recv() {
                    Ok(command) => self.command(command, &mut sources),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.closed = true;
                        break;
                    }
                }
            }
            if self.closed && sources.is_empty() {
                return;
            }
            if let Err(e) = wait(wake, &sources, &mut ready) {
                tracing::error!(app = %self.app, "log thread cannot poll its pipes: {e}");
                return;
            }
            // A stale wake-up only costs one more look at the commands.
            let _ = wake.read();
            // From the end, so removing a finished pipe keeps the others'
            // indexes.
            for &i in ready.iter().rev() {
                if !self.pump(&mut sources[i]) {
                    sources.swap_remove(i);
                }
            }
        }
    }

    fn command(&mut self, command: Command, sources: &mut Vec<Source>) {
        match command {
            Command::Attach(parked) => sources.push(Source::new(parked)),
            Command::Freeze(reply) => {
                let _ = reply.send(sources.drain(..).map(Source::park).collect());
            }
            Command::Truncate(reply) => {
                let failed: Vec<String> = self
                    .files
                    .values_mut()
                    .filter_map(|file| file.truncate(&self.app).err())
                    .map(|e| e.to_string())
                    .collect();
                let _ = reply.send(if failed.is_empty() {
                    Ok(())
                } else {
                    Err(failed.join("; "))
                });
            }
            Command::Rotate => {
                for file in self.files.values_mut() {
                    file.rotate(&self.layout.rotation, &self.app);
                }
            }
            Command::Configure(layout) => {
                if (layout.merge, &layout.files) != (self.layout.merge, &self.layout.files) {
                    self.files.clear();
                }
                self.layout = layout;
            }
            Command::Close => self.closed = true,
        }
    }

    /// Reads one chunk of `source` and writes its whole lines; `false` once
    /// the pipe has ended (its last line written, newline added).
    fn pump(&mut self, source: &mut Source) -> bool {
        let read = read_lines(source).unwrap_or_else(|e| {
            tracing::warn!(app = %self.app, "log pipe read failed: {e}");
            Got::End
        });
        let (cut, ended) = match read {
            Got::Lines(cut) => (cut, false),
            Got::Nothing => return true,
            Got::End => match source.lines.end() {
                Some(cut) => (cut, true),
                None => return false,
            },
        };
        let prefix = source.prefix();
        let lines = source.lines.lines(cut);
        match prefix {
            Some(prefix) => {
                let mut stamped = std::mem::take(&mut self.stamped);
                stamp(lines, &prefix, &mut stamped);
                self.write(source.stream, source.instance, &stamped);
                self.stamped = stamped;
            }
            None => self.write(source.stream, source.instance, lines),
        }
        if ended {
            return false;
        }
        source.lines.consume(cut);
        if self.stamped.capacity() > 4 * self.stamped.len().max(FIRST_CHUNK) {
            self.stamped = Vec::new();
        }
        true
    }

    /// Appends lines of `stream` to its file, and to the file with both
    /// streams (`log_file`) if there is one; prints them too under
    /// `supd run` ([`super::console`]).
    fn write(&mut self, stream: Stream, instance: u32, bytes: &[u8]) {
        super::console::write(&self.app, instance, stream, bytes);
        let own = match stream {
            Stream::Out => Target::Out,
            Stream::Err => Target::Err,
        };
        for target in [own, Target::Both] {
            match self.file(target, instance) {
                Ok(Some(key)) => {
                    if let Some(file) = self.files.get_mut(&key) {
                        file.write(bytes, instance, &self.layout.rotation, &self.app);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(app = %self.app, "cannot open a log file: {e}");
                    *self.problem.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("cannot open a log file: {e}"));
                }
            }
        }
    }

    /// Opens, on first use, the file of `target` an instance writes to
    /// (creating its folder, as PM2 does); its key, `None` when there is
    /// no such file (`log_file` unset) or it is `/dev/null`.
    fn file(&mut self, target: Target, instance: u32) -> io::Result<Option<(Target, Option<u32>)>> {
        let key = (target, (!self.layout.merge).then_some(instance));
        if self.files.contains_key(&key) {
            return Ok(Some(key));
        }
        let Some(path) = self.layout.files.path(target, key.1) else {
            return Ok(None);
        };
        if path == std::path::Path::new(DEV_NULL) {
            return Ok(None);
        }
        if let Some(folder) = path.parent().filter(|f| !f.exists()) {
            std::fs::create_dir_all(folder).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", folder.display()))
            })?;
        }
        let file = LogFile::open(path, key.1.is_none(), self.problem.clone())?;
        self.files.insert(key, file);
        Ok(Some(key))
    }
}

/// Waits until the eventfd or a pipe is readable; fills `ready` with the
/// indexes of the readable pipes.
fn wait(wake: &EventFd, sources: &[Source], ready: &mut Vec<usize>) -> nix::Result<()> {
    let mut fds: Vec<PollFd> = std::iter::once(wake.as_fd())
        .chain(sources.iter().map(|s| s.pipe.as_fd()))
        .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            result => result?,
        };
        break;
    }
    ready.clear();
    ready.extend(
        fds[1..]
            .iter()
            .enumerate()
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| i),
    );
    Ok(())
}

/// Reads what the pipe holds (up to what [`LineBuf::room`] offers) and
/// finds where its whole lines end.
fn read_lines(source: &mut Source) -> io::Result<Got> {
    match source.pipe.read(source.lines.room()) {
        Ok(0) => Ok(Got::End),
        Ok(n) => Ok(source.lines.add(n).map_or(Got::Nothing, Got::Lines)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(Got::Nothing)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source reading from a real pipe, after `pending`, with `bytes`
    /// already written.
    fn source_with(pending: &[u8], bytes: &[u8]) -> (Source, std::io::PipeWriter) {
        use std::io::Write;
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(bytes).unwrap();
        let source = Source::new(Parked {
            stream: Stream::Out,
            instance: 0,
            fd: reader.into(),
            pending: pending.to_vec(),
            date_format: None,
        });
        (source, writer)
    }

    #[test]
    fn reads_cut_after_the_last_newline_and_keep_the_rest() {
        let (mut source, writer) = source_with(b"par", b"tial\nnext\nhalf");
        assert!(matches!(read_lines(&mut source), Ok(Got::Lines(13))));
        assert_eq!(source.lines.lines(13), b"partial\nnext\n");
        assert!(matches!(read_lines(&mut source), Ok(Got::Nothing)));
        drop(writer);
        assert!(matches!(read_lines(&mut source), Ok(Got::End)));
        source.lines.consume(13);
        assert_eq!(source.park().pending, b"half");
    }

    #[test]
    fn an_endless_line_is_cut_at_max_line() {
        use super::super::lines::MAX_LINE;
        let (mut source, writer) = source_with(b"", b"");
        let filler = std::thread::spawn(move || {
            use std::io::Write;
            let mut writer = writer;
            let _ = writer.write_all(&vec![b'x'; MAX_LINE + 10]);
        });
        let cut = loop {
            if let Got::Lines(cut) = read_lines(&mut source).unwrap() {
                break cut;
            }
        };
        assert_eq!(cut, MAX_LINE + 1);
        // Drain the rest, so the filler ends.
        source.lines.consume(cut);
        loop {
            match read_lines(&mut source).unwrap() {
                Got::End => break,
                Got::Lines(cut) => source.lines.consume(cut),
                Got::Nothing => {}
            }
        }
        assert_eq!(source.lines.end(), Some(11));
        filler.join().unwrap();
    }
}
