//! The properties the fuzz targets check, one module per target.
//!
//! Shared by the libFuzzer binaries (`fuzz_targets/`, nightly features
//! through `cargo fuzz`) and by the stable replay of the committed corpora
//! (`tests/fuzz_corpus.rs`, which includes this file by path): a corpus
//! file is checked the same way in both. Every module is named by path,
//! so the includer's location does not matter.

#[path = "alloc.rs"]
pub mod alloc;
#[path = "ecosystem.rs"]
pub mod ecosystem;
#[path = "frame.rs"]
pub mod frame;
#[path = "import.rs"]
pub mod import;
#[path = "lines.rs"]
pub mod lines;
