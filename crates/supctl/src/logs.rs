//! `supctl logs`: the last lines of the log files, then following them.
//!
//! The CLI reads the files the daemon writes, so a tail costs no daemon
//! work. Following polls the file sizes: a file that grows is read from
//! where we stopped (across restarts of the app, which append to the same
//! files); a file that shrinks was flushed and is read again from its start.
//!
//! Each line goes through a [`Printer`]: tagged with its app and instance
//! (coloured per app on a terminal, plain when piped; none with `--raw`),
//! with `--timestamp`, as JSON with `--json`, filtered by `--grep`. The
//! instance of a line in a merged file comes from the file's instance index
//! ([`supd_proto::log_index`]), read after the lines it describes.
//!
//! Files are opened as the daemon opens them, never through a symbolic
//! link ([`open_to_read`]): a link planted in the home is an error naming
//! it, not a file printed from elsewhere.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use supd_proto::home::open_to_read;
use supd_proto::log_index::{InstanceRuns, index_path};
use supd_proto::{AppLogs, Home, Request, Response};

mod ending;

pub use self::ending::last_lines;
use self::ending::{
    last_lines_across_rotations, plain_name, read_rotated, rotated_names, split_last, tag,
};
use crate::args::LogsArgs;
use crate::client::Client;

/// How often followed files are checked for growth.
const POLL: Duration = Duration::from_millis(50);
/// How often `logs` without a name looks for apps started since.
const RESCAN: Duration = Duration::from_secs(1);

/// How lines are printed.
struct Printer {
    /// Prefix lines with their app even when the instance is unknown (no
    /// name was given).
    tagged: bool,
    /// No prefix at all (`--raw`).
    raw: bool,
    /// ANSI colours per app (stdout is a terminal, and not `--json`).
    color: bool,
    timestamp: bool,
    json: bool,
    grep: Option<regex::Regex>,
}

/// Colours apps cycle through, picked by a hash of the name.
const PALETTE: [anstyle::AnsiColor; 6] = [
    anstyle::AnsiColor::Cyan,
    anstyle::AnsiColor::Green,
    anstyle::AnsiColor::Yellow,
    anstyle::AnsiColor::Magenta,
    anstyle::AnsiColor::Blue,
    anstyle::AnsiColor::BrightRed,
];

impl Printer {
    fn new(args: &LogsArgs) -> anyhow::Result<Printer> {
        use std::io::IsTerminal;
        let grep = match &args.grep {
            Some(p) => {
                Some(regex::Regex::new(p).map_err(|e| anyhow::anyhow!("--grep {p:?}: {e}"))?)
            }
            None => None,
        };
        Ok(Printer {
            tagged: args.name.is_none(),
            raw: args.raw,
            color: !args.json && io::stdout().is_terminal(),
            timestamp: args.timestamp,
            json: args.json,
            grep,
        })
    }

    /// Prints one line (without its newline) of `source`, written by
    /// `instance` when its file's index says so.
    fn line(
        &self,
        out: &mut impl Write,
        source: &Source,
        instance: Option<u32>,
        line: &[u8],
    ) -> io::Result<()> {
        let Source { app, stream, .. } = source;
        let instance = instance.or(source.instance);
        let text = String::from_utf8_lossy(line);
        if self.grep.as_ref().is_some_and(|g| !g.is_match(&text)) {
            return Ok(());
        }
        let now = || chrono::Local::now();
        if self.json {
            let record = serde_json::json!({
                "app": app,
                // Unknown only for lines written before supd kept indexes.
                "instance": instance,
                "stream": stream,
                "time": now().to_rfc3339(),
                "message": text,
            });
            return writeln!(out, "{record}");
        }
        if self.timestamp {
            write!(out, "{} ", now().format("%Y-%m-%d %H:%M:%S%.3f"))?;
        }
        if !self.raw && (self.tagged || instance.is_some()) {
            let tag = match instance {
                Some(i) => format!("{app}:{i}"),
                None => app.clone(),
            };
            if self.color {
                let hash = app
                    .bytes()
                    .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
                let style =
                    anstyle::Style::new().fg_color(Some(PALETTE[hash % PALETTE.len()].into()));
                write!(out, "{}{tag}{} | ", style.render(), style.render_reset())?;
            } else {
                write!(out, "{tag} | ")?;
            }
        }
        out.write_all(line)?;
        out.write_all(b"\n")
    }
}

/// Whose lines a file holds.
#[derive(Debug, Clone)]
struct Source {
    app: String,
    /// The instance, for per-instance files.
    instance: Option<u32>,
    /// `out` or `err`.
    stream: &'static str,
}

/// One followed file.
struct Tail {
    /// Whose lines these are.
    source: Source,
    /// The file being read, kept open: after a rotation renames it, what
    /// was written to it last is still read before moving to the new file.
    file: Option<File>,
    /// Bytes already printed.
    offset: u64,
    /// The end of a line not yet complete.
    partial: Vec<u8>,
    /// The file's instance index, read as far as the file.
    index: IndexTail,
    /// The rotated files that existed when the file was opened (names
    /// without `.gz`): any other one found at the next rotation was rotated
    /// in between and is read whole.
    rotated: Vec<PathBuf>,
}

/// A followed instance index (a merged file's; per-instance files have none).
struct IndexTail {
    path: PathBuf,
    /// Opened once it exists, then kept open like the log itself, so a
    /// rotated log is drained with its own index.
    file: Option<File>,
    /// Bytes of the index consumed.
    read: u64,
    /// The start of an entry not yet complete.
    pending: Vec<u8>,
    runs: InstanceRuns,
}

impl IndexTail {
    /// Opens the index of `log` right after `log` itself: the daemon creates
    /// a merged file's index before the file.
    fn of(log: &Path) -> IndexTail {
        let path = index_path(log);
        IndexTail {
            file: open_to_read(&path).ok(),
            path,
            read: 0,
            pending: Vec::new(),
            runs: InstanceRuns::default(),
        }
    }

    /// Reads the entries added since the last call. Called after reading the
    /// log: the daemon writes an entry before its bytes, so every byte read
    /// so far is covered. An index that shrank was flushed with its log.
    fn refresh(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            self.file = open_to_read(&self.path).ok();
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        if len < self.read {
            self.read = 0;
            self.pending.clear();
            self.runs.clear();
        }
        file.seek(SeekFrom::Start(self.read))?;
        let fresh = Read::by_ref(file)
            .take(len - self.read)
            .read_to_end(&mut self.pending)?;
        self.read += fresh as u64;
        let used = self.runs.extend(&self.pending);
        self.pending.drain(..used);
        Ok(())
    }
}

impl Tail {
    /// Follows `path` from byte `offset` (a missing file from its start).
    fn new(path: &Path, source: Source, offset: u64) -> Tail {
        let file = open_to_read(path).ok();
        let offset = if file.is_some() { offset } else { 0 };
        Tail {
            source,
            file,
            offset,
            partial: Vec::new(),
            index: IndexTail::of(path),
            rotated: rotated_names(path),
        }
    }
}

/// Runs `supctl logs`.
pub fn run(home: &Home, args: &LogsArgs) -> anyhow::Result<()> {
    let target = args.name.clone().unwrap_or_else(|| "all".to_string());
    let printer = Printer::new(args)?;
    let mut client = Client::connect(home)?;
    let apps = log_files(&mut client, &target)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut tails: HashMap<PathBuf, Tail> = HashMap::new();
    for app in &apps {
        for (path, source) in selected(app, args) {
            let (lines, end) = last_lines_across_rotations(&path, args.lines)?;
            for (instance, line) in lines {
                printer.line(&mut out, &source, instance, &line)?;
            }
            let tail = Tail::new(&path, source, end);
            tails.insert(path, tail);
        }
    }
    out.flush()?;
    if args.nostream {
        return Ok(());
    }
    let mut last_scan = Instant::now();
    loop {
        for (path, tail) in &mut tails {
            follow(path, tail, &printer, &mut out)?;
        }
        out.flush()?;
        if printer.tagged && last_scan.elapsed() >= RESCAN {
            last_scan = Instant::now();
            // New apps are followed from their first line.
            if let Ok(apps) = Client::connect(home).and_then(|mut c| log_files(&mut c, "all")) {
                for app in &apps {
                    for (path, source) in selected(app, args) {
                        if let std::collections::hash_map::Entry::Vacant(slot) = tails.entry(path) {
                            let tail = Tail::new(slot.key(), source, 0);
                            slot.insert(tail);
                        }
                    }
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

fn log_files(client: &mut Client, target: &str) -> anyhow::Result<Vec<AppLogs>> {
    match client.request(&Request::LogFiles {
        target: target.to_string(),
    })? {
        Response::LogFiles { apps } => Ok(apps),
        other => anyhow::bail!("unexpected answer from supd: {other:?}"),
    }
}

/// The files `--out`/`--err` select (per instance, when the app's logs
/// are), with whose lines they hold.
fn selected(app: &AppLogs, args: &LogsArgs) -> Vec<(PathBuf, Source)> {
    let pairs: Vec<(Option<u32>, &PathBuf, &PathBuf)> = if app.instances.is_empty() {
        vec![(None, &app.out, &app.err)]
    } else {
        app.instances
            .iter()
            .map(|i| (Some(i.instance), &i.out, &i.err))
            .collect()
    };
    let mut files = Vec::new();
    for (instance, out, err) in pairs {
        let source = |stream| Source {
            app: app.name.clone(),
            instance,
            stream,
        };
        if !args.err {
            files.push((out.clone(), source("out")));
        }
        if !args.out {
            files.push((err.clone(), source("err")));
        }
    }
    files
}

/// Prints what was appended to the followed file since `tail.offset`; after
/// a rotation (`path` names a new file) drains the old one, then any file
/// rotated since, whole, and moves on; after a flush (the same file,
/// shorter) starts over.
fn follow(path: &Path, tail: &mut Tail, printer: &Printer, out: &mut impl Write) -> io::Result<()> {
    if tail.file.is_none() {
        tail.file = open_to_read(path).ok();
        tail.offset = 0;
    }
    if tail.file.is_none() {
        return Ok(());
    }
    drain(tail, printer, out)?;
    let ours = tail
        .file
        .as_ref()
        .map(|f| f.metadata().map(|m| m.ino()))
        .transpose()?;
    if fs::symlink_metadata(path).is_ok_and(|m| Some(m.ino()) != ours) {
        // Rotated: whatever reached the old file before the switch is read,
        // then the files rotated after it (several rotations may fall
        // between two polls), then the new file from its start.
        drain(tail, printer, out)?;
        let rotated = supd_proto::home::rotated(path);
        let missed = rotated
            .iter()
            .filter(|file| !tail.rotated.contains(&plain_name(file)))
            // The oldest new one is the file just drained.
            .skip(1);
        for file in missed {
            let Some(text) = read_rotated(file)? else {
                continue;
            };
            let (_, lines) = split_last(&text, usize::MAX);
            for (instance, line) in tag(lines, 0, &InstanceRuns::of(file)) {
                printer.line(out, &tail.source, instance, &line)?;
            }
        }
        *tail = Tail::new(path, tail.source.clone(), 0);
        tail.rotated = rotated.iter().map(|p| plain_name(p)).collect();
    }
    Ok(())
}

/// Reads the tail's file from its offset to its end, printing complete lines.
fn drain(tail: &mut Tail, printer: &Printer, out: &mut impl Write) -> io::Result<()> {
    let Some(file) = tail.file.as_mut() else {
        return Ok(());
    };
    let len = file.metadata()?.len();
    if len < tail.offset {
        // Flushed: start over.
        tail.partial.clear();
        tail.offset = 0;
    }
    if len == tail.offset {
        return Ok(());
    }
    file.seek(SeekFrom::Start(tail.offset))?;
    let mut fresh = Vec::with_capacity((len - tail.offset) as usize);
    Read::by_ref(file)
        .take(len - tail.offset)
        .read_to_end(&mut fresh)?;
    tail.offset += fresh.len() as u64;
    tail.partial.extend_from_slice(&fresh);
    let Some(cut) = memchr::memrchr(b'\n', &tail.partial) else {
        return Ok(());
    };
    tail.index.refresh()?;
    let mut at = tail.offset - tail.partial.len() as u64;
    let rest = tail.partial.split_off(cut + 1);
    for line in tail.partial[..cut].split(|&b| b == b'\n') {
        printer.line(out, &tail.source, tail.index.runs.at(at), line)?;
        at += line.len() as u64 + 1;
    }
    tail.partial = rest;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_reads_every_file_rotated_between_two_polls() {
        use supd_proto::home::rotated_name;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a-out.log");
        let index = index_path(&path);
        fs::create_dir_all(index.parent().unwrap()).unwrap();
        fs::write(&path, "one\n").unwrap();
        fs::write(&index, "0 0\n").unwrap();
        let source = Source {
            app: "a".into(),
            instance: None,
            stream: "out",
        };
        let printer = Printer {
            tagged: false,
            raw: false,
            color: false,
            timestamp: false,
            json: false,
            grep: None,
        };
        let mut tail = Tail::new(&path, source, 4);
        // Between two polls: the followed file gets a line and is rotated,
        // its successor is written and rotated (and gzipped), and a third
        // one is started.
        let rotate = |stamp: &str| {
            fs::rename(&path, rotated_name(&path, stamp)).unwrap();
            fs::rename(&index, index_path(&rotated_name(&path, stamp))).unwrap();
        };
        fs::write(&path, "one\ntwo\n").unwrap();
        rotate("1");
        fs::write(&index, "0 1\n").unwrap();
        fs::write(&path, "three\n").unwrap();
        rotate("2");
        let gz = File::create(dir.path().join("a-out.log.2.gz")).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(gz, flate2::Compression::default());
        encoder.write_all(b"three\n").unwrap();
        encoder.finish().unwrap();
        fs::remove_file(rotated_name(&path, "2")).unwrap();
        fs::write(&index, "0 0\n").unwrap();
        fs::write(&path, "four\n").unwrap();
        let mut out = Vec::new();
        follow(&path, &mut tail, &printer, &mut out).unwrap();
        follow(&path, &mut tail, &printer, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a:0 | two\na:1 | three\na:0 | four\n"
        );
    }
}
