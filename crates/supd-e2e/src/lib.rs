//! Empty on purpose: this package only hosts the end-to-end test target
//! (`tests/e2e.rs` at the workspace root), which drives the real binaries
//! built by `cargo build --workspace`.
