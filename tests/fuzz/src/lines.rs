//! The log line cutter: the daemon's own `logs/lines.rs` (included by
//! path) fed an arbitrary stream, in reads of arbitrary sizes, with a
//! freeze and thaw (a `supctl update` handover) at an arbitrary point.
//!
//! The input is a program: a first byte choosing the pending bytes, a
//! second seeding the read sizes, then literals (`0..=127`: that many
//! bytes follow) and runs (`128..=255`: `(op - 127) * 16 KiB` copies of
//! the next byte), so lines longer than the 1 MiB cut are reached.
//!
//! Properties: every chunk to write is whole lines (non-empty, ends with a
//! newline); a newline is added only to a line of exactly `MAX_LINE` bytes
//! or to the last one, and the chunks are otherwise exactly the bytes
//! read; a read is never offered an empty or oversized room; stamping
//! prefixes each line and changes nothing else.

#[path = "../../../crates/supd/src/logs/lines.rs"]
mod cutter;

use cutter::{LineBuf, MAX_LINE, MAX_READ, stamp};

/// The longest stream one input may describe.
const MAX_STREAM: usize = 3 << 20;
/// The unit of a run's length.
const RUN_UNIT: usize = 16 * 1024;

/// Checks one input; panics on a broken property.
pub fn check(data: &[u8]) {
    let [pending_len, seed, program @ ..] = data else {
        return;
    };
    let stream = expand(program);
    // Pending bytes are the start of an incomplete line: no newline,
    // shorter than MAX_LINE.
    let pending_len = (*pending_len as usize * 64)
        .min(memchr::memchr(b'\n', &stream).unwrap_or(stream.len()))
        .min(MAX_LINE - 1);
    let (pending, rest) = stream.split_at(pending_len);
    let mut sizes = Sizes(u32::from(*seed) | 1);
    let freeze_at = sizes.next(rest.len() + 1) - 1;
    let prefix = format!("T{seed}: ");

    let mut buf = LineBuf::new(pending.to_vec());
    let mut written = Vec::with_capacity(stream.len() + stream.len() / 64);
    let mut at = 0;
    let mut frozen = false;
    while at < rest.len() {
        if !frozen && at >= freeze_at {
            buf = LineBuf::new(buf.into_pending());
            frozen = true;
        }
        let room = buf.room();
        assert!(
            (1..=MAX_READ).contains(&room.len()),
            "a room of {}",
            room.len()
        );
        let n = sizes.next(room.len()).min(rest.len() - at);
        room[..n].copy_from_slice(&rest[at..at + n]);
        at += n;
        if let Some(cut) = buf.add(n) {
            write(&mut written, buf.lines(cut), &prefix);
            buf.consume(cut);
        }
    }
    if let Some(cut) = buf.end() {
        write(&mut written, buf.lines(cut), &prefix);
        buf.consume(cut);
    }
    assert!(buf.into_pending().is_empty(), "bytes left after the end");
    check_cuts(&stream, &written);
}

/// Appends one chunk to `written` after checking it, and its stamping.
fn write(written: &mut Vec<u8>, chunk: &[u8], prefix: &str) {
    assert!(
        chunk.ends_with(b"\n"),
        "a chunk of {} bytes not ending a line",
        chunk.len()
    );
    let mut stamped = b"stale".to_vec();
    stamp(chunk, prefix, &mut stamped);
    let lines: Vec<&[u8]> = chunk.split_inclusive(|&b| b == b'\n').collect();
    let mut expected = Vec::with_capacity(chunk.len() + lines.len() * prefix.len());
    for line in lines {
        expected.extend_from_slice(prefix.as_bytes());
        expected.extend_from_slice(line);
    }
    assert!(
        stamped == expected,
        "stamping changed a chunk of {} bytes",
        chunk.len()
    );
    written.extend_from_slice(chunk);
}

/// `written` is `stream` with newlines added only after a line of
/// `MAX_LINE` bytes and after an unfinished last line.
fn check_cuts(stream: &[u8], written: &[u8]) {
    let mut at = 0;
    let lines: Vec<&[u8]> = written.split_inclusive(|&b| b == b'\n').collect();
    for (index, line) in lines.iter().enumerate() {
        let text = &line[..line.len() - 1];
        assert!(text.len() <= MAX_LINE, "a line of {} bytes", text.len());
        assert!(
            stream[at..].starts_with(text),
            "line {index} differs from what was read (at byte {at})"
        );
        at += text.len();
        if text.len() == MAX_LINE {
            continue; // cut: the newline was added
        }
        if at == stream.len() {
            assert_eq!(index, lines.len() - 1, "a newline added before the end");
            continue; // the last line, ended
        }
        assert_eq!(
            stream[at], b'\n',
            "a newline added at byte {at} in a short line"
        );
        at += 1;
    }
    assert_eq!(
        at,
        stream.len(),
        "{} bytes read were never written",
        stream.len() - at
    );
}

/// Runs the input's program into the stream it describes.
fn expand(program: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    let mut ops = program.iter();
    while let Some(&op) = ops.next() {
        if stream.len() >= MAX_STREAM {
            break;
        }
        if op < 128 {
            stream.extend(ops.by_ref().take(op as usize));
        } else if let Some(&byte) = ops.next() {
            let len = (op as usize - 127) * RUN_UNIT;
            stream.resize(stream.len() + len, byte);
        }
    }
    stream.truncate(MAX_STREAM);
    stream
}

/// Read sizes: a small xorshift, half the time the whole room.
struct Sizes(u32);

impl Sizes {
    /// A size in `1..=most` (`most` at least 1).
    fn next(&mut self, most: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        if self.0 & 1 == 0 {
            most
        } else {
            1 + (self.0 as usize >> 1) % most
        }
    }
}
