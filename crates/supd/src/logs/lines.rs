//! Cutting a pipe's output into whole lines: the buffer one pipe is read
//! into, where it is cut, how it grows and shrinks, and the
//! `log_date_format` stamp.
//!
//! Pure (no pipe, no file, nothing else of the daemon), so the rules are
//! table-tested here and fuzzed by `tests/fuzz` (which includes this file
//! by path): whatever the bytes and however the reads split them, the
//! chunks to write are whole lines and, newlines added by a cut aside, are
//! exactly the bytes read.

/// A new pipe's buffer: a quiet app costs a page.
pub const FIRST_CHUNK: usize = 4096;
/// The most one read takes from a pipe. The read holds the pipe's lock
/// while it copies, so the app cannot write meanwhile; and the chunk is
/// written to the file right after, best while it is still in the CPU's
/// cache. With 1 MiB reads from a 1 MiB pipe a flood moved at half the
/// speed it does with 128 KiB reads (see `docs/benchmarks.md`).
pub const MAX_READ: usize = 128 * 1024;
/// The most a pipe's buffer holds. It doubles each time a read fills it, up
/// to this, and halves while reads use less than a quarter of it; beyond
/// [`MAX_READ`] it grows only for an incomplete line. A line this long is
/// cut here (a newline added), so one endless line cannot grow memory.
pub const MAX_LINE: usize = 1 << 20;

/// One pipe's buffer: whole lines are cut at its front, the incomplete
/// line stays for the next read.
pub struct LineBuf {
    /// `buf[..filled]` holds an incomplete line; one byte always stays
    /// free after the room a read fills, for the newline a cut line gets.
    buf: Vec<u8>,
    /// How many bytes of `buf` hold data.
    filled: usize,
    /// How many bytes the last read gave, to shrink a buffer that is
    /// bigger than the app's output needs.
    last_read: usize,
}

impl LineBuf {
    /// A buffer holding `pending`, the start of an incomplete line (a
    /// frozen pipe's), with room to read after it.
    pub fn new(pending: Vec<u8>) -> LineBuf {
        let filled = pending.len();
        // Pending bytes are shorter than MAX_LINE; were they not, there is
        // still room for one byte, so a read never gets an empty slice
        // (which would read as the end of the pipe).
        let room = (filled + FIRST_CHUNK).min(MAX_LINE).max(filled + 1);
        let mut buf = pending;
        buf.resize(room + 1, 0);
        LineBuf {
            buf,
            filled,
            last_read: 0,
        }
    }

    /// Where the next read goes: after the incomplete line, at most
    /// [`MAX_READ`] bytes, never empty.
    pub fn room(&mut self) -> &mut [u8] {
        let end = (self.buf.len() - 1).min(self.filled + MAX_READ);
        &mut self.buf[self.filled..end]
    }

    /// Takes note of `read` bytes read into [`LineBuf::room`]; the length
    /// of the whole lines now at the front, if any. A read that fills the
    /// room doubles the buffer, up to [`MAX_READ`], or up to [`MAX_LINE`]
    /// while no line has ended; a line that fills [`MAX_LINE`] is cut there.
    pub fn add(&mut self, read: usize) -> Option<usize> {
        let room = self.buf.len() - 1;
        let start = self.filled;
        self.filled += read;
        self.last_read = read;
        // Only the new bytes: the pending ones hold no newline.
        let newline = memchr::memrchr(b'\n', &self.buf[start..self.filled]);
        let full = self.filled == room;
        let limit = if newline.is_some() {
            MAX_READ
        } else {
            MAX_LINE
        };
        if full && room < limit {
            self.buf.resize((room * 2).min(limit) + 1, 0);
        }
        match newline {
            Some(pos) => Some(start + pos + 1),
            None if full && room >= MAX_LINE => Some(self.end_line()),
            None => None,
        }
    }

    /// At the end of the pipe: the incomplete line, a newline added, as a
    /// cut; `None` when there is none.
    pub fn end(&mut self) -> Option<usize> {
        (self.filled > 0).then(|| self.end_line())
    }

    /// The first `cut` bytes: whole lines, as [`LineBuf::add`] or
    /// [`LineBuf::end`] gave them.
    pub fn lines(&self, cut: usize) -> &[u8] {
        &self.buf[..cut]
    }

    /// Forgets the first `cut` bytes (written): the incomplete line moves
    /// to the front, and a buffer bigger than the reads need shrinks.
    pub fn consume(&mut self, cut: usize) {
        self.buf.copy_within(cut..self.filled, 0);
        self.filled -= cut;
        self.shrink();
    }

    /// The incomplete line, for a pipe handed to the next daemon image.
    pub fn into_pending(mut self) -> Vec<u8> {
        self.buf.truncate(self.filled);
        self.buf
    }

    /// Adds a newline after the incomplete line (the byte kept free for
    /// it); the length of the line now whole.
    fn end_line(&mut self) -> usize {
        self.buf[self.filled] = b'\n';
        self.filled += 1;
        self.filled
    }

    /// Halves the buffer while reads use less than a quarter of it (what
    /// it holds always fits).
    fn shrink(&mut self) {
        let room = self.buf.len() - 1;
        let half = (room / 2).max(FIRST_CHUNK);
        if self.last_read < room / 4 && half < room && self.filled <= half {
            self.buf.truncate(half + 1);
            self.buf.shrink_to_fit();
        }
    }
}

/// Writes into `out` every line of `lines` (which ends with a newline)
/// prefixed with `prefix` (`<time>: `), as PM2 does with `log_date_format`.
pub fn stamp(lines: &[u8], prefix: &str, out: &mut Vec<u8>) {
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

    /// Copies `bytes` into the room (as a read would) and adds them.
    fn feed(buf: &mut LineBuf, bytes: &[u8]) -> Option<usize> {
        buf.room()[..bytes.len()].copy_from_slice(bytes);
        buf.add(bytes.len())
    }

    #[test]
    fn stamp_prefixes_each_line() {
        let mut out = b"stale".to_vec();
        stamp(b"a\nb\n", "T: ", &mut out);
        assert_eq!(out, b"T: a\nT: b\n");
    }

    #[test]
    fn cuts_after_the_last_newline_and_keeps_the_rest() {
        let mut buf = LineBuf::new(b"par".to_vec());
        assert_eq!(feed(&mut buf, b"tial\nnext\nhalf"), Some(13));
        assert_eq!(buf.lines(13), b"partial\nnext\n");
        buf.consume(13);
        assert_eq!(feed(&mut buf, b"-line"), None);
        assert_eq!(buf.end(), Some(10));
        assert_eq!(buf.lines(10), b"half-line\n");
        buf.consume(10);
        assert_eq!(buf.end(), None);
    }

    #[test]
    fn a_long_pending_line_leaves_room_to_read() {
        let pending = vec![b'p'; 3 * FIRST_CHUNK];
        let mut buf = LineBuf::new(pending.clone());
        assert_eq!(feed(&mut buf, b"end\n"), Some(pending.len() + 4));
        // Even a pending line longer than any the daemon keeps.
        let mut buf = LineBuf::new(vec![b'p'; MAX_LINE + 5]);
        assert_eq!(buf.room().len(), 1);
        assert_eq!(feed(&mut buf, b"q"), Some(MAX_LINE + 7));
    }

    #[test]
    fn the_buffer_doubles_while_reads_fill_it_and_halves_when_they_do_not() {
        let mut buf = LineBuf::new(Vec::new());
        while buf.filled < 64 * 1024 {
            let n = buf.room().len();
            assert_eq!(feed(&mut buf, &vec![b'y'; n]), None);
        }
        // The last read filled 64 KiB exactly: the room doubled once more.
        assert_eq!(buf.buf.len(), 128 * 1024 + 1);
        assert_eq!(feed(&mut buf, b"\n"), Some(65537));
        buf.consume(65537);
        assert_eq!(buf.buf.len(), 64 * 1024 + 1);
        buf.shrink();
        assert_eq!(buf.buf.len(), 32 * 1024 + 1);
    }

    #[test]
    fn short_lines_never_grow_the_buffer_past_one_read() {
        let line = [b"y".repeat(99), b"\n".to_vec()].concat();
        let flood = line.repeat(10_000);
        let mut buf = LineBuf::new(Vec::new());
        let mut at = 0;
        while at < flood.len() {
            let n = buf.room().len().min(flood.len() - at);
            assert!(n <= MAX_READ);
            if let Some(cut) = feed(&mut buf, &flood[at..at + n]) {
                buf.consume(cut);
            }
            at += n;
        }
        assert!(buf.buf.len() <= MAX_READ + 1);
    }

    #[test]
    fn an_endless_line_is_cut_at_max_line() {
        let mut buf = LineBuf::new(Vec::new());
        let cut = loop {
            let n = buf.room().len();
            if let Some(cut) = feed(&mut buf, &vec![b'x'; n]) {
                break cut;
            }
        };
        assert_eq!(cut, MAX_LINE + 1);
        assert_eq!(buf.lines(cut)[MAX_LINE], b'\n');
        assert!(buf.lines(cut)[..MAX_LINE].iter().all(|&b| b == b'x'));
    }
}
