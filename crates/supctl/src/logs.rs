//! `supctl logs`: the last lines of the log files, then following them.
//!
//! The CLI reads the files the daemon writes, so a tail costs no daemon
//! work. Following polls the file sizes: a file that grows is read from
//! where we stopped (across restarts of the app, which append to the same
//! files); a file that shrinks was flushed and is read again from its start.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
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
    /// Bytes already printed.
    offset: u64,
    /// The end of a line not yet complete.
    partial: Vec<u8>,
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
            let prefix = if tagged { format!("{} | ", app.name) } else { String::new() };
            let (lines, end) = last_lines(&path, args.lines)?;
            for line in lines {
                out.write_all(prefix.as_bytes())?;
                out.write_all(&line)?;
                out.write_all(b"\n")?;
            }
            tails.insert(path, Tail { prefix, offset: end, partial: Vec::new() });
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
                        tails.entry(path).or_insert(Tail { prefix, offset: 0, partial: Vec::new() });
                    }
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

fn log_files(client: &mut Client, target: &str) -> anyhow::Result<Vec<AppLogs>> {
    match client.request(&Request::LogFiles { target: target.to_string() })? {
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

/// Prints what was appended to `path` since `tail.offset`.
fn follow(path: &Path, tail: &mut Tail, out: &mut impl Write) -> io::Result<()> {
    let Ok(mut file) = File::open(path) else { return Ok(()) };
    let len = file.metadata()?.len();
    if len < tail.offset {
        // Flushed: start over.
        tail.offset = 0;
        tail.partial.clear();
    }
    if len == tail.offset {
        return Ok(());
    }
    file.seek(SeekFrom::Start(tail.offset))?;
    let mut fresh = Vec::with_capacity((len - tail.offset) as usize);
    Read::by_ref(&mut file).take(len - tail.offset).read_to_end(&mut fresh)?;
    tail.offset += fresh.len() as u64;
    tail.partial.extend_from_slice(&fresh);
    let Some(cut) = tail.partial.iter().rposition(|&b| b == b'\n') else { return Ok(()) };
    let rest = tail.partial.split_off(cut + 1);
    for line in tail.partial.split_inclusive(|&b| b == b'\n') {
        out.write_all(tail.prefix.as_bytes())?;
        out.write_all(line)?;
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
        assert_eq!(lines, vec![b"line 99997".to_vec(), b"line 99998".to_vec(), b"line 99999".to_vec()]);
        assert_eq!(end, text.len() as u64);
        std::fs::write(&path, "").unwrap();
        assert!(last_lines(&path, 3).unwrap().0.is_empty());
        std::fs::write(&path, "a\nb\n").unwrap();
        assert_eq!(last_lines(&path, 15).unwrap().0.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
