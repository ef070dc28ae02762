//! `supctl logs`: the last lines of the log files, then following them.
//!
//! The CLI reads the files the daemon writes, so a tail costs no daemon
//! work. Following polls the file sizes: a file that grows is read from
//! where we stopped (across restarts of the app, which append to the same
//! files); a file that shrinks was flushed and is read again from its start.
//!
//! Each line goes through a [`Printer`]: tagged with its app when several
//! apps are shown (coloured per app on a terminal, plain when piped), with
//! `--timestamp`, as JSON with `--json`, filtered by `--grep`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use supd_proto::{AppLogs, Home, Request, Response};

use crate::args::LogsArgs;
use crate::client::Client;

/// How often followed files are checked for growth.
const POLL: Duration = Duration::from_millis(50);
/// How often `logs` without a name looks for apps started since.
const RESCAN: Duration = Duration::from_secs(1);

/// How lines are printed.
struct Printer {
    /// Prefix lines with their app (no name was given).
    tagged: bool,
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
            color: !args.json && io::stdout().is_terminal(),
            timestamp: args.timestamp,
            json: args.json,
            grep,
        })
    }

    /// Prints one line (without its newline) of `app`'s `stream`, from
    /// `instance` when the files are per instance.
    fn line(&self, out: &mut impl Write, source: &Source, line: &[u8]) -> io::Result<()> {
        let Source {
            app,
            instance,
            stream,
        } = source;
        let text = String::from_utf8_lossy(line);
        if self.grep.as_ref().is_some_and(|g| !g.is_match(&text)) {
            return Ok(());
        }
        let now = || chrono::Local::now();
        if self.json {
            let record = serde_json::json!({
                "app": app,
                // Known with per-instance files (merge_logs = false).
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
        if self.tagged || instance.is_some() {
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
}

impl Tail {
    /// Follows `path` from byte `offset` (a missing file from its start).
    fn new(path: &Path, source: Source, offset: u64) -> Tail {
        let file = File::open(path).ok();
        let offset = if file.is_some() { offset } else { 0 };
        Tail {
            source,
            file,
            offset,
            partial: Vec::new(),
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
            for line in lines {
                printer.line(&mut out, &source, &line)?;
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

/// The last `n` lines of a file (without their newlines) and the file's
/// length when read. A missing file has no lines.
pub fn last_lines(path: &Path, n: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    const BLOCK: u64 = 64 * 1024;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // Read backwards until the buffer holds n complete lines (n+1 newlines,
    // counting the one that ends the last line).
    while start > 0 && buf.iter().filter(|&&b| b == b'\n').count() <= n {
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        start = from;
    }
    let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if text.is_empty() {
        lines.clear();
    }
    let skip = lines.len().saturating_sub(n);
    Ok((lines.split_off(skip), len))
}

/// The last `n` lines of a log file, continuing into its rotated files
/// (newest first, gzipped ones decompressed) when the current file holds
/// fewer; and the current file's length.
pub fn last_lines_across_rotations(path: &Path, n: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let (mut lines, end) = last_lines(path, n)?;
    for older in supd_proto::home::rotated(path).iter().rev() {
        if lines.len() >= n {
            break;
        }
        let mut text = Vec::new();
        let file = match File::open(older) {
            Ok(file) => file,
            // Removed meanwhile (retention, or compression finishing).
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if older.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(file).read_to_end(&mut text)?;
        } else {
            io::BufReader::new(file).read_to_end(&mut text)?;
        }
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        if body.is_empty() {
            continue;
        }
        let mut earlier: Vec<Vec<u8>> = body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        let keep = earlier.len().saturating_sub(n - lines.len());
        earlier.drain(..keep);
        earlier.append(&mut lines);
        lines = earlier;
    }
    Ok((lines, end))
}

/// Prints what was appended to the followed file since `tail.offset`; after
/// a rotation (`path` names a new file) drains the old one and moves on; after
/// a flush (the same file, shorter) starts over.
fn follow(path: &Path, tail: &mut Tail, printer: &Printer, out: &mut impl Write) -> io::Result<()> {
    if tail.file.is_none() {
        tail.file = File::open(path).ok();
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
    if fs::metadata(path).is_ok_and(|m| Some(m.ino()) != ours) {
        // Rotated: whatever reached the old file before the switch is read,
        // then the new file from its start.
        drain(tail, printer, out)?;
        tail.file = File::open(path).ok();
        tail.offset = 0;
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
    let Some(cut) = tail.partial.iter().rposition(|&b| b == b'\n') else {
        return Ok(());
    };
    let rest = tail.partial.split_off(cut + 1);
    for line in tail.partial[..cut].split(|&b| b == b'\n') {
        printer.line(out, &tail.source, line)?;
    }
    tail.partial = rest;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_of_a_file() {
        let dir = std::env::temp_dir().join(format!("supctl-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.log");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let (lines, end) = last_lines(&path, 3).unwrap();
        assert_eq!(
            lines,
            vec![
                b"line 99997".to_vec(),
                b"line 99998".to_vec(),
                b"line 99999".to_vec()
            ]
        );
        assert_eq!(end, text.len() as u64);
        std::fs::write(&path, "").unwrap();
        assert!(last_lines(&path, 3).unwrap().0.is_empty());
        std::fs::write(&path, "a\nb\n").unwrap();
        assert_eq!(last_lines(&path, 15).unwrap().0.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
