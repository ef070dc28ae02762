//! Which instance wrote which bytes of a merged log file.
//!
//! With `merge_logs` (the default) every instance of an app appends to the
//! same file, so the file alone cannot say whose a line is. Beside each
//! merged file the daemon keeps an index, `logs/instances/<file name>`: one
//! text line `<byte offset> <instance>` each time the writing instance
//! changes. The daemon writes an entry *before* the bytes it describes, so a
//! reader that reads the log first and its index second finds every byte it
//! read covered. A rotated file's index is renamed with it and kept plain
//! when the log is gzipped (its offsets are those of the uncompressed text).

use std::path::{Path, PathBuf};

/// The folder, beside the log files, that holds the indexes.
const DIR: &str = "instances";

/// The index of the log file `log` (of a rotated `.gz` file too).
pub fn index_path(log: &Path) -> PathBuf {
    let name = log
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    log.with_file_name(DIR).join(name)
}

/// The folder of the indexes of the log files in `log_dir`.
pub fn index_dir(log_dir: &Path) -> PathBuf {
    log_dir.join(DIR)
}

/// The index line saying that `instance` writes from byte `offset` on.
pub fn entry(offset: u64, instance: u32) -> String {
    format!("{offset} {instance}\n")
}

/// The runs of an index: from which offset which instance wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InstanceRuns {
    /// `(offset, instance)`, in the order written (offsets never decrease).
    runs: Vec<(u64, u32)>,
}

impl InstanceRuns {
    /// The whole index of `log`; empty when it has none (a per-instance
    /// file, or one written before indexes existed).
    pub fn of(log: &Path) -> InstanceRuns {
        let mut runs = InstanceRuns::default();
        if let Ok(text) = std::fs::read(index_path(log)) {
            runs.extend(&text);
        }
        runs
    }

    /// Adds the complete entries of `text` and returns how many bytes they
    /// took: a last line without its newline (still being written) is left
    /// for the next call, and a malformed line is skipped, as if the bytes
    /// it describes had no known writer.
    pub fn extend(&mut self, text: &[u8]) -> usize {
        let complete = text
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |end| end + 1);
        let entries = text[..complete]
            .split(|&b| b == b'\n')
            .filter_map(|line| std::str::from_utf8(line).ok()?.split_once(' '))
            .filter_map(|(offset, instance)| Some((offset.parse().ok()?, instance.parse().ok()?)));
        self.runs.extend(entries);
        complete
    }

    /// Forgets every run (the log was flushed).
    pub fn clear(&mut self) {
        self.runs.clear();
    }

    /// The instance that wrote the byte at `offset`, if known.
    pub fn at(&self, offset: u64) -> Option<u32> {
        // The last entry at or before the offset: a later entry for the same
        // offset (a write that failed, then another instance's) wins.
        let after = self.runs.partition_point(|&(start, _)| start <= offset);
        after.checked_sub(1).map(|i| self.runs[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_sit_beside_the_logs_and_ignore_gzip() {
        let log = Path::new("/h/logs/api-out.log");
        assert_eq!(index_path(log), Path::new("/h/logs/instances/api-out.log"));
        let rotated = Path::new("/h/logs/api-out.log.20261202-010203.5.gz");
        assert_eq!(
            index_path(rotated),
            Path::new("/h/logs/instances/api-out.log.20261202-010203.5")
        );
    }

    #[test]
    fn runs_answer_for_every_offset() {
        let mut runs = InstanceRuns::default();
        assert_eq!(runs.at(0), None);
        runs.extend(format!("{}{}{}", entry(0, 1), entry(10, 0), entry(10, 2)).as_bytes());
        assert_eq!(runs.extend(b"junk\n25 3\n40 1"), 10);
        assert_eq!(runs.at(0), Some(1));
        assert_eq!(runs.at(9), Some(1));
        assert_eq!(runs.at(10), Some(2), "the later entry for one offset wins");
        assert_eq!(runs.at(24), Some(2));
        assert_eq!(
            runs.at(1000),
            Some(3),
            "a partial last line is not an entry"
        );
        runs.clear();
        assert_eq!(runs.at(30), None);
    }
}
