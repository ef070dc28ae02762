//! One log file: appending whole-line chunks, size-based rotation,
//! compression and retention, and surviving a full disk. A merged file
//! (every instance of an app) also keeps its instance index ([`IndexFile`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use supd_proto::home::{open_no_symlink, open_to_read, rotated, rotated_name};

use super::index::{self, IndexFile};
use crate::home::create_fresh;

/// How an app's files rotate (the app's keys over `[daemon]`'s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when a file would grow past this many bytes.
    pub max_size: Option<u64>,
    /// Rotated files kept per file (older ones are deleted).
    pub retain: u32,
    /// gzip rotated files.
    pub compress: bool,
}

/// A log file being appended to.
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    /// Lines dropped since writing started failing (disk full…).
    dropped: Option<u64>,
    /// Shared with `show`: the current problem, if any.
    problem: Arc<Mutex<Option<String>>>,
    /// Which instance wrote what, for a file every instance writes to.
    index: Option<IndexFile>,
}

impl LogFile {
    /// Opens (creating) `path` for appending; `merged` when every instance
    /// writes to it, so it keeps an instance index.
    pub fn open(
        path: PathBuf,
        merged: bool,
        problem: Arc<Mutex<Option<String>>>,
    ) -> io::Result<LogFile> {
        let index = merged.then(|| IndexFile::of(&path));
        let file = open_append(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            index,
            path,
            file: Some(file),
            size,
            dropped: None,
            problem,
        })
    }

    /// Appends whole lines written by `instance`, rotating first if they
    /// would cross `max_size`. When the disk refuses them (full,
    /// read-only…) they are dropped and counted, the app is never blocked or
    /// stopped, and the file is reopened at the next chunk so writing
    /// resumes once space returns. A chunk is written whole or not at all
    /// ([`append_whole`]): the file never ends inside a line.
    pub fn write(&mut self, bytes: &[u8], instance: u32, rotation: &Rotation, app: &str) {
        if let Some(max) = rotation.max_size
            && self.size > 0
            && self.size + bytes.len() as u64 > max
        {
            self.rotate(rotation, app);
        }
        match self.append(bytes, instance) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                self.resumed(app);
            }
            Err(e) => {
                // Reopen at the next chunk: the old descriptor may point at
                // a file that can never take more (e.g. replaced, or a full
                // device), and reopening is cheap. The index entry may
                // describe bytes that never reached the file.
                self.file = None;
                if let Some(index) = &mut self.index {
                    index.forget();
                }
                let lines = memchr::memchr_iter(b'\n', bytes).count() as u64;
                let dropped = self.dropped.get_or_insert(0);
                if *dropped == 0 {
                    tracing::error!(app, file = %self.path.display(), "cannot write the log: {e}; dropping lines until it works again");
                }
                *dropped += lines;
                let message = format!(
                    "cannot write {}: {e} ({} lines dropped)",
                    self.path.display(),
                    *dropped
                );
                self.set_problem(Some(message));
            }
        }
    }

    /// Writing works again: says how many lines were lost meanwhile.
    fn resumed(&mut self, app: &str) {
        if let Some(dropped) = self.dropped.take() {
            tracing::info!(app, file = %self.path.display(), "log writing resumed; {dropped} lines were dropped");
            self.set_problem(None);
        }
    }

    /// Writes `bytes` at the end of the file, (re)opening it first if
    /// needed, after the index entry that names their instance.
    fn append(&mut self, bytes: &[u8], instance: u32) -> io::Result<()> {
        let mut file = self.take_open()?;
        if let Some(index) = &mut self.index {
            index.note(self.size, instance);
        }
        let written = append_whole(&mut file, bytes);
        self.file = Some(file);
        written
    }

    /// The open file, taken to be put back: (re)opened if a failure closed
    /// it, then `size` is its length.
    fn take_open(&mut self) -> io::Result<File> {
        match self.file.take() {
            Some(file) => Ok(file),
            None => {
                let file = open_append(&self.path)?;
                self.size = file.metadata()?.len();
                Ok(file)
            }
        }
    }

    fn set_problem(&self, message: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = message;
    }

    /// Empties the file (`supctl flush`), reopening it first if a failure
    /// closed it (a full disk): a flush that cannot empty the file is an
    /// error naming it, never a silent success.
    pub fn truncate(&mut self, app: &str) -> io::Result<()> {
        let emptied = self
            .take_open()
            .and_then(|file| file.set_len(0).map(|()| file));
        match emptied {
            Ok(file) => self.file = Some(file),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot empty {}: {e}", self.path.display()),
                ));
            }
        }
        if let Some(index) = &mut self.index {
            index.truncate();
        }
        self.size = 0;
        self.resumed(app);
        Ok(())
    }

    /// Moves the current file aside (`NAME.log.<time>`), starts a new one,
    /// compresses the old one in the background if asked, and deletes
    /// rotated files beyond `retain`.
    pub fn rotate(&mut self, rotation: &Rotation, app: &str) {
        if self.size == 0 {
            return;
        }
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S%.9f").to_string();
        let mut target = rotated_name(&self.path, &stamp);
        let mut n = 1;
        let taken = |p: &Path| fs::symlink_metadata(p).is_ok();
        while taken(&target) || taken(&gz(&target)) {
            target = rotated_name(&self.path, &format!("{stamp}_{n}"));
            n += 1;
        }
        if let Err(e) = fs::rename(&self.path, &target) {
            tracing::error!(app, file = %self.path.display(), "cannot rotate the log: {e}");
            return;
        }
        if let Some(index) = &mut self.index {
            index.rotate(&target);
        }
        self.file = open_append(&self.path).ok();
        self.size = 0;
        prune(&self.path, rotation.retain);
        if rotation.compress {
            let app = app.to_string();
            let current = self.path.clone();
            let retain = rotation.retain;
            std::thread::spawn(move || {
                if let Err(e) = compress(&target) {
                    tracing::error!(app, file = %target.display(), "cannot compress the rotated log: {e}");
                }
                prune(&current, retain);
            });
        }
    }
}

/// Opens `path` for appending, creating it. A symbolic link there is
/// refused, never followed. Opening never blocks: a FIFO
/// nobody reads is refused (ENXIO) instead of stopping the daemon, and a
/// FIFO somebody reads is then written in blocking mode like a file.
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = open_no_symlink(
        path,
        OpenOptions::new().create(true).append(true),
        libc::O_NONBLOCK,
    )?;
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
    let blocking = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(blocking))?;
    Ok(file)
}

/// Appends all of `bytes` (whole lines) to `file`, or none of them: when
/// a write stops partway (ENOSPC, EFBIG, EIO), the part it wrote is cut off
/// again (`ftruncate` back to the length before it), so the file still
/// ends with a whole line. The length is read only then, from the file
/// itself (it is in append mode, so the part is at its end).
fn append_whole(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    let mut written = 0;
    let error = loop {
        if written == bytes.len() {
            return Ok(());
        }
        match file.write(&bytes[written..]) {
            Ok(0) => break io::Error::from(io::ErrorKind::WriteZero),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break e,
        }
    };
    if written > 0 {
        let cut = file
            .metadata()
            .and_then(|m| file.set_len(m.len().saturating_sub(written as u64)));
        if let Err(e) = cut {
            return Err(io::Error::new(
                error.kind(),
                format!(
                    "{error}; the part written could not be cut off ({e}), the file may end with a partial line"
                ),
            ));
        }
    }
    Err(error)
}

fn gz(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// gzips `path` to `path.gz` (through a `.tmp` file, so a reader never sees
/// half a file), then removes `path`.
fn compress(path: &Path) -> io::Result<()> {
    let target = gz(path);
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut encoder =
        flate2::write::GzEncoder::new(create_fresh(&tmp)?, flate2::Compression::default());
    io::copy(&mut open_to_read(path)?, &mut encoder)?;
    encoder.finish()?.sync_all()?;
    fs::rename(&tmp, &target)?;
    fs::remove_file(path)
}

/// Deletes the oldest rotated files of `current` beyond `retain`.
fn prune(current: &Path, retain: u32) {
    let files = rotated(current);
    // A file and its compressed copy (mid-compression) count once.
    let mut seen: Vec<String> = Vec::new();
    let mut keep_from = files.len();
    for (i, f) in files.iter().enumerate().rev() {
        let key = f.to_string_lossy().trim_end_matches(".gz").to_string();
        if !seen.contains(&key) {
            seen.push(key);
        }
        if seen.len() > retain as usize {
            break;
        }
        keep_from = i;
    }
    for old in &files[..keep_from] {
        let _ = fs::remove_file(old);
        index::remove(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> Arc<Mutex<Option<String>>> {
        Arc::default()
    }

    #[test]
    fn rotates_on_size_keeps_retain_and_never_splits_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a-out.log");
        let mut file = LogFile::open(path.clone(), false, problem()).unwrap();
        let rotation = Rotation {
            max_size: Some(100),
            retain: 2,
            compress: false,
        };
        for i in 0..20 {
            file.write(
                format!("line {i:04} {}\n", "x".repeat(30)).as_bytes(),
                0,
                &rotation,
                "a",
            );
        }
        let rotated = rotated(&path);
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        for f in rotated.iter().chain([&path]) {
            let text = fs::read_to_string(f).unwrap();
            assert!(text.len() <= 100 && text.ends_with('\n'), "{f:?}: {text}");
        }
        assert!(fs::read_to_string(&path).unwrap().contains("line 0019"));
    }

    #[test]
    fn a_merged_file_indexes_its_writers_across_rotation_and_flush() {
        use supd_proto::log_index::{InstanceRuns, index_path};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m-out.log");
        let mut file = LogFile::open(path.clone(), true, problem()).unwrap();
        let rotation = Rotation {
            max_size: Some(12),
            retain: 5,
            compress: false,
        };
        for (line, instance) in [("a0\n", 0), ("b0\n", 0), ("c1\n", 1)] {
            file.write(line.as_bytes(), instance, &rotation, "m");
        }
        assert_eq!(fs::read_to_string(index_path(&path)).unwrap(), "0 0\n6 1\n");
        // The next chunk crosses max_size: the index moves with its file.
        file.write(b"d1\ne1\n", 1, &rotation, "m");
        let old = &rotated(&path)[0];
        let runs = InstanceRuns::of(old);
        assert_eq!((runs.at(3), runs.at(6)), (Some(0), Some(1)));
        assert_eq!(fs::read_to_string(index_path(&path)).unwrap(), "0 1\n");
        file.truncate("m").unwrap();
        file.write(b"f0\n", 0, &rotation, "m");
        assert_eq!(fs::read_to_string(index_path(&path)).unwrap(), "0 0\n");
    }

    #[test]
    fn a_planted_symbolic_link_is_refused_and_its_target_spared() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "precious\n").unwrap();
        let path = dir.path().join("b-out.log");
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let err = LogFile::open(path.clone(), false, problem()).err().unwrap();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "precious\n");
    }

    #[test]
    fn a_write_that_stops_partway_is_cut_back_to_the_last_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-out.log");
        fs::write(&path, "whole\n").unwrap();
        // A file-size limit makes the kernel stop the write partway (EFBIG)
        // as a full disk does (ENOSPC); it is set in a child (this test
        // binary again), so no other test is limited.
        // Its output goes to pipes: the limit would cut a file it went to.
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "logs::file::tests::partial_write_child",
                "--ignored",
                "--nocapture",
            ])
            .env("SUPD_PARTIAL_WRITE_FILE", &path)
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "{}{}",
            String::from_utf8_lossy(&child.stdout),
            String::from_utf8_lossy(&child.stderr)
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "whole\n");
    }

    /// Run by the test above in a child process with a small file-size limit.
    #[test]
    #[ignore]
    fn partial_write_child() {
        let Some(path) = std::env::var_os("SUPD_PARTIAL_WRITE_FILE") else {
            return;
        };
        // SAFETY: ignoring SIGXFSZ only makes the write fail with EFBIG.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, 10, 10).unwrap();
        let mut file = open_append(Path::new(&path)).unwrap();
        let err = append_whole(&mut file, b"a line longer than the limit\n").unwrap_err();
        assert!(err.raw_os_error() == Some(libc::EFBIG), "{err}");
    }
}
