//! The selected app's log lines: the last lines of its out and err files,
//! then what is appended to them, in the order it is seen.
//!
//! Opening reads the tail of each file with [`crate::logs::last_lines`]
//! (out first, then err, so recent errors end up at the bottom); each poll
//! then reads only what the files grew by, which is cheap enough to do many
//! times a second. A file that shrank was flushed or rotated: it is read
//! again from its start, below the lines already shown (as a stream would).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use supd_proto::AppLogs;

use super::state::LogLine;

/// Lines kept in memory: more than any terminal is tall.
const KEEP: usize = 200;
/// At most this much of a burst is read per poll; a flood shows its end.
const MAX_READ: u64 = 256 * 1024;

/// One followed file.
#[derive(Debug)]
struct Followed {
    path: PathBuf,
    /// Lines from here are drawn as errors.
    err: bool,
    /// Bytes consumed so far.
    offset: u64,
    /// The start of a line whose newline has not arrived yet.
    partial: Vec<u8>,
}

/// The log lines of one app.
#[derive(Debug)]
pub struct LogTail {
    /// The app whose files these are.
    pub app: String,
    files: Vec<Followed>,
    lines: VecDeque<LogLine>,
}

impl LogTail {
    /// Reads the last lines of the app's out and err files.
    pub fn open(logs: &AppLogs) -> LogTail {
        let mut tail = LogTail {
            app: logs.name.clone(),
            files: Vec::new(),
            lines: VecDeque::new(),
        };
        for (path, err) in [(&logs.out, false), (&logs.err, true)] {
            // An unreadable file shows nothing, like a missing one.
            let ending = crate::logs::last_lines(path, KEEP).unwrap_or_default();
            for line in ending.lines {
                tail.push(&line, err);
            }
            tail.files.push(Followed {
                path: path.clone(),
                err,
                offset: ending.end,
                partial: Vec::new(),
            });
        }
        tail
    }

    /// Reads what the files grew by; `true` when new lines came.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.files.len() {
            let mut fresh = Vec::new();
            // A file that cannot be read now may be readable at the next poll.
            let _ = read_new(&mut self.files[i], &mut fresh);
            let err = self.files[i].err;
            for line in fresh {
                self.push(&line, err);
                changed = true;
            }
        }
        changed
    }

    /// The lines, oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.iter().cloned().collect()
    }

    fn push(&mut self, line: &[u8], err: bool) {
        if self.lines.len() == KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(LogLine {
            text: sanitize(line),
            err,
        });
    }
}

/// Appends the complete lines added to `file` since the last read to `out`.
fn read_new(file: &mut Followed, out: &mut Vec<Vec<u8>>) -> io::Result<()> {
    let mut f = match File::open(&file.path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if len < file.offset {
        // Flushed or rotated: a new file, read from its start.
        file.offset = 0;
        file.partial.clear();
    }
    if len == file.offset {
        return Ok(());
    }
    let mut from = file.offset;
    let skipped = len - from > MAX_READ;
    if skipped {
        // Too much at once: keep the end, starting at a line boundary.
        from = len - MAX_READ;
        file.partial.clear();
    }
    f.seek(SeekFrom::Start(from))?;
    let mut fresh = Vec::new();
    f.take(len - from).read_to_end(&mut fresh)?;
    file.offset = from + fresh.len() as u64;
    let mut fresh = &fresh[..];
    if skipped {
        let cut = fresh
            .iter()
            .position(|&b| b == b'\n')
            .map_or(fresh.len(), |i| i + 1);
        fresh = &fresh[cut..];
    }
    file.partial.extend_from_slice(fresh);
    if let Some(end) = file.partial.iter().rposition(|&b| b == b'\n') {
        let rest = file.partial.split_off(end + 1);
        out.extend(
            file.partial[..end]
                .split(|&b| b == b'\n')
                .map(<[u8]>::to_vec),
        );
        file.partial = rest;
    }
    Ok(())
}

/// A log line made safe to draw: invalid UTF-8 replaced, terminal escape
/// sequences (colours, cursor moves) and other control characters removed,
/// tabs expanded.
pub fn sanitize(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                // A two-character escape.
                _ => {}
            },
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_escapes_and_controls() {
        assert_eq!(sanitize(b"\x1b[1;31merror\x1b[0m: boom\r"), "error: boom");
        assert_eq!(sanitize(b"\x1b]0;title\x07a\tb"), "a    b");
        assert_eq!(sanitize(b"\x1b]8;;http://x\x1b\\link"), "link");
        assert_eq!(sanitize(b"caf\xc3\xa9 \xff"), "café \u{fffd}");
    }

    #[test]
    fn follows_both_files_and_starts_over_after_a_flush() {
        let dir = std::env::temp_dir().join(format!("supctl-monit-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let logs = AppLogs {
            name: "app".into(),
            out: dir.join("app-out.log"),
            err: dir.join("app-err.log"),
            log: None,
            instances: Vec::new(),
        };
        std::fs::write(&logs.out, "one\ntwo\n").unwrap();
        let mut tail = LogTail::open(&logs);
        let texts = |t: &LogTail| {
            t.lines()
                .into_iter()
                .map(|l| (l.text, l.err))
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&tail), [("one".into(), false), ("two".into(), false)]);
        assert!(!tail.poll());

        std::fs::write(&logs.err, "bad\npart").unwrap();
        assert!(tail.poll());
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .open(&logs.out)
            .unwrap();
        std::io::Write::write_all(&mut out, b"three\n").unwrap();
        assert!(tail.poll());
        assert_eq!(
            texts(&tail),
            [
                ("one".into(), false),
                ("two".into(), false),
                ("bad".into(), true),
                ("three".into(), false)
            ]
        );

        std::fs::write(&logs.out, "").unwrap();
        assert!(!tail.poll());
        std::fs::write(&logs.out, "fresh\n").unwrap();
        assert!(tail.poll());
        assert_eq!(texts(&tail).last().unwrap(), &("fresh".to_string(), false));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
