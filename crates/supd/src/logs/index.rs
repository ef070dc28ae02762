//! The writer's side of a merged file's instance index
//! ([`supd_proto::log_index`]): one entry each time the writing instance
//! changes, written before the bytes it describes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use supd_proto::log_index::{entry, index_path};

/// The index of one merged log file.
pub struct IndexFile {
    path: PathBuf,
    file: Option<File>,
    /// The instance of the last entry written; `None` forces a new entry.
    last: Option<u32>,
}

impl IndexFile {
    /// Opens (creating) the index of `log`. Called before `log` is
    /// created, so a reader that finds the log finds its index.
    pub fn of(log: &Path) -> IndexFile {
        let mut index = IndexFile {
            path: index_path(log),
            file: None,
            last: None,
        };
        // Best effort, like every entry; retried at the first one.
        let _ = index.open();
        index
    }

    /// Records that `instance` writes from `offset` on, unless it already
    /// wrote the previous chunk. Best effort: an index that cannot be
    /// written only costs readers the instance numbers, so it is retried at
    /// the next chunk and never holds the log back.
    pub fn note(&mut self, offset: u64, instance: u32) {
        if self.last == Some(instance) {
            return;
        }
        let written = self
            .open()
            .and_then(|file| file.write_all(entry(offset, instance).as_bytes()));
        match written {
            Ok(()) => self.last = Some(instance),
            Err(_) => self.forget(),
        }
    }

    fn open(&mut self) -> io::Result<&mut File> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                if let Some(dir) = self.path.parent() {
                    crate::home::ensure_folder(dir)?;
                }
                super::file::open_append(&self.path)?
            }
        };
        Ok(self.file.insert(file))
    }

    /// The next chunk starts a new entry (the last one may describe bytes
    /// that never reached the log).
    pub fn forget(&mut self) {
        self.file = None;
        self.last = None;
    }

    /// Empties the index with its log (`flush`).
    pub fn truncate(&mut self) {
        if let Some(file) = &self.file {
            let _ = file.set_len(0);
        }
        self.last = None;
    }

    /// Follows its log to the rotated name `target` and starts the index of
    /// the log's next file (before that file is created).
    pub fn rotate(&mut self, target: &Path) {
        let _ = fs::rename(&self.path, index_path(target));
        self.forget();
        let _ = self.open();
    }
}

/// Deletes the index of a deleted log file.
pub fn remove(log: &Path) {
    let _ = fs::remove_file(index_path(log));
}
