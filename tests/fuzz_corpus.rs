//! The fuzz corpora, replayed on stable: every file kept under
//! `tests/fuzz/corpus/<target>/` goes through the same property checks the
//! fuzz targets run (`tests/fuzz/src`, included by path), so what the
//! fuzzers learned protects every build without nightly or libFuzzer.
//! See docs/fuzzing.md.

#[path = "fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

/// The frame check measures what the decoder allocates.
#[global_allocator]
static ALLOC: checks::alloc::Counting = checks::alloc::Counting;

/// Runs `check` over every file of one target's corpus; a failure names
/// the file, so `cargo fuzz run TARGET FILE` reproduces it.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no corpus kept", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("a corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{}: {why}", file.display());
        }
    }
}

#[test]
fn frame_corpus() {
    replay("frame", checks::frame::check);
}

#[test]
fn ecosystem_corpus() {
    replay("ecosystem", checks::ecosystem::check);
}

#[test]
fn import_corpus() {
    replay("import", checks::import::check);
}

#[test]
fn lines_corpus() {
    replay("lines", checks::lines::check);
}
