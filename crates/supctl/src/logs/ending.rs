//! The end of a log file: its last lines (`logs --lines N`, `monit`'s
//! panes), read backwards from the end in chunks so a huge file costs only
//! what is printed, and across the file's rotations when it has fewer lines.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use supd_proto::home::open_to_read;
use supd_proto::log_index::InstanceRuns;

/// The end of a file: its last lines and where they sit.
#[derive(Debug, Default)]
pub struct Ending {
    /// The lines, without their newlines.
    pub lines: Vec<Vec<u8>>,
    /// The offset of the first of them.
    pub start: u64,
    /// The file's length when read.
    pub end: u64,
}

/// The last `n` lines of a file. A missing file has no lines.
pub fn last_lines(path: &Path, n: usize) -> io::Result<Ending> {
    let mut file = match open_to_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ending::default()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    const BLOCK: u64 = 64 * 1024;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // Read backwards until the buffer holds n complete lines (n+1 newlines,
    // counting the one that ends the last line).
    while start > 0 && memchr::memchr_iter(b'\n', &buf).count() <= n {
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        start = from;
    }
    let (skipped, lines) = split_last(&buf, n);
    Ok(Ending {
        lines,
        start: start + skipped as u64,
        end: len,
    })
}

/// The last `n` lines of `text` (newline-terminated), and how many bytes
/// come before them.
pub(super) fn split_last(text: &[u8], n: usize) -> (usize, Vec<Vec<u8>>) {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    if body.is_empty() || n == 0 {
        return (text.len(), Vec::new());
    }
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let kept = lines.split_off(lines.len().saturating_sub(n));
    let skipped = lines.iter().map(|l| l.len() + 1).sum();
    (skipped, kept.into_iter().map(<[u8]>::to_vec).collect())
}

/// A line and the instance that wrote it, when its file's index knows.
type Tagged = (Option<u32>, Vec<u8>);

/// Tags consecutive `lines` starting at byte `start` of a file with `runs`.
pub(super) fn tag(lines: Vec<Vec<u8>>, mut start: u64, runs: &InstanceRuns) -> Vec<Tagged> {
    lines
        .into_iter()
        .map(|line| {
            let instance = runs.at(start);
            start += line.len() as u64 + 1;
            (instance, line)
        })
        .collect()
}

/// The last `n` lines of a log file with their instances, continuing into
/// its rotated files (newest first, gzipped ones decompressed) when the
/// current file holds fewer; and the current file's length.
pub fn last_lines_across_rotations(path: &Path, n: usize) -> io::Result<(Vec<Tagged>, u64)> {
    let ending = last_lines(path, n)?;
    // The index is read after the lines it describes.
    let mut lines = tag(ending.lines, ending.start, &InstanceRuns::of(path));
    for older in supd_proto::home::rotated(path).iter().rev() {
        if lines.len() >= n {
            break;
        }
        let Some(text) = read_rotated(older)? else {
            continue;
        };
        let (skipped, earlier) = split_last(&text, n - lines.len());
        let mut earlier = tag(earlier, skipped as u64, &InstanceRuns::of(older));
        earlier.append(&mut lines);
        lines = earlier;
    }
    Ok((lines, ending.end))
}

/// The whole text of a rotated file (decompressed), or `None` if it was
/// removed meanwhile (retention, or its compression finishing).
pub(super) fn read_rotated(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match open_to_read(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file).read_to_end(&mut text)?;
    } else {
        io::BufReader::new(file).read_to_end(&mut text)?;
    }
    Ok(Some(text))
}

/// The names of the rotated files of `path`, without `.gz` (a file keeps
/// its name when it is compressed).
pub(super) fn rotated_names(path: &Path) -> Vec<PathBuf> {
    supd_proto::home::rotated(path)
        .iter()
        .map(|p| plain_name(p))
        .collect()
}

/// A rotated file's name without `.gz`.
pub(super) fn plain_name(path: &Path) -> PathBuf {
    let name = path.as_os_str().to_string_lossy();
    PathBuf::from(name.strip_suffix(".gz").unwrap_or(&name))
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
        let Ending { lines, start, end } = last_lines(&path, 3).unwrap();
        assert_eq!(
            lines,
            vec![
                b"line 99997".to_vec(),
                b"line 99998".to_vec(),
                b"line 99999".to_vec()
            ]
        );
        assert_eq!(end, text.len() as u64);
        assert_eq!(start, end - 33);
        std::fs::write(&path, "").unwrap();
        assert!(last_lines(&path, 3).unwrap().lines.is_empty());
        std::fs::write(&path, "a\nb\n").unwrap();
        assert_eq!(last_lines(&path, 15).unwrap().lines.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
