//! `supctl logs`: the last lines of the log files, then following them.
//!
//! The CLI reads the files the daemon writes, so a tail costs no daemon
//! work. Following polls the file sizes: a file that grows is read from
//! where we stopped (across restarts of the app, which append to the same
//! files); a file that shrinks was flushed and is read again from its start.

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

/// One followed file.
struct Tail {
    /// Printed before each line (`app | `), or empty.
    prefix: String,
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
    fn new(path: &Path, prefix: String, offset: u64) -> Tail {
        let file = File::open(path).ok();
        let offset = if file.is_some() { offset } else { 0 };
        Tail {
            prefix,
            file,
            offset,
            partial: Vec::new(),
        }
    }
}

/// Runs `supctl logs`.
pub fn run(home: &Home, args: &LogsArgs) -> anyhow::Result<()> {
    let target = args.name.clone().unwrap_or_else(|| "all".to_string());
    let tagged = args.name.is_none();
    let mut client = Client::connect(home)?;
    let apps = log_files(&mut client, &target)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut tails: HashMap<PathBuf, Tail> = HashMap::new();
    for app in &apps {
        for path in selected(app, args) {
            let prefix = if tagged {
                format!("{} | ", app.name)
            } else {
                String::new()
            };
            let (lines, end) = last_lines_across_rotations(&path, args.lines)?;
            for line in lines {
                out.write_all(prefix.as_bytes())?;
                out.write_all(&line)?;
                out.write_all(b"\n")?;
            }
            let tail = Tail::new(&path, prefix, end);
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
            follow(path, tail, &mut out)?;
        }
        out.flush()?;
        if tagged && last_scan.elapsed() >= RESCAN {
            last_scan = Instant::now();
            // New apps are followed from their first line.
            if let Ok(apps) = Client::connect(home).and_then(|mut c| log_files(&mut c, "all")) {
                for app in &apps {
                    for path in selected(app, args) {
                        let prefix = format!("{} | ", app.name);
                        if !tails.contains_key(&path) {
                            let tail = Tail::new(&path, prefix, 0);
                            tails.insert(path, tail);
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

fn selected(app: &AppLogs, args: &LogsArgs) -> Vec<PathBuf> {
    match (args.out, args.err) {
        (true, _) => vec![app.out.clone()],
        (_, true) => vec![app.err.clone()],
        _ => vec![app.out.clone(), app.err.clone()],
    }
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
        let file = File::open(older)?;
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
fn follow(path: &Path, tail: &mut Tail, out: &mut impl Write) -> io::Result<()> {
    if tail.file.is_none() {
        tail.file = File::open(path).ok();
        tail.offset = 0;
    }
    let Some(file) = tail.file.as_mut() else {
        return Ok(());
    };
    drain(
        file,
        tail.offset,
        &mut tail.offset,
        &mut tail.partial,
        &tail.prefix,
        out,
    )?;
    let ours = file.metadata()?.ino();
    if fs::metadata(path).is_ok_and(|m| m.ino() != ours) {
        // Rotated: whatever reached the old file before the switch is read,
        // then the new file from its start.
        drain(
            file,
            tail.offset,
            &mut tail.offset,
            &mut tail.partial,
            &tail.prefix,
            out,
        )?;
        tail.file = File::open(path).ok();
        tail.offset = 0;
    }
    Ok(())
}

/// Reads `file` from `from` to its end, printing complete lines.
fn drain(
    file: &mut File,
    from: u64,
    offset: &mut u64,
    partial: &mut Vec<u8>,
    prefix: &str,
    out: &mut impl Write,
) -> io::Result<()> {
    let len = file.metadata()?.len();
    let from = if len < from {
        // Flushed: start over.
        partial.clear();
        0
    } else {
        from
    };
    *offset = from;
    if len == from {
        return Ok(());
    }
    file.seek(SeekFrom::Start(from))?;
    let mut fresh = Vec::with_capacity((len - from) as usize);
    Read::by_ref(file)
        .take(len - from)
        .read_to_end(&mut fresh)?;
    *offset += fresh.len() as u64;
    partial.extend_from_slice(&fresh);
    let Some(cut) = partial.iter().rposition(|&b| b == b'\n') else {
        return Ok(());
    };
    let rest = partial.split_off(cut + 1);
    for line in partial.split_inclusive(|&b| b == b'\n') {
        out.write_all(prefix.as_bytes())?;
        out.write_all(line)?;
    }
    *partial = rest;
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
