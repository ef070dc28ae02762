//! Chunk buffers passed from an app's pipe readers to its writer and back.
//!
//! A flooding app moves hundreds of megabytes a second through its reader,
//! a chunk of up to [`READ_CHUNK`] bytes at a time. Allocating each chunk
//! afresh costs page faults and zeroed pages in the daemon, and the one
//! thread that frees it is not the one that allocates; so the writer hands
//! written chunks back and readers take them again. Only a couple are kept,
//! so an app that once flooded holds little.

use std::sync::Mutex;

/// Bytes a reader asks of a pipe at once.
pub const READ_CHUNK: usize = 256 * 1024;
/// Spare buffers kept per app.
const SPARE: usize = 2;

/// An app's spare chunk buffers.
#[derive(Default)]
pub struct Buffers(Mutex<Vec<Vec<u8>>>);

impl Buffers {
    /// An empty buffer with room for a read.
    pub fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
    }

    /// Keeps a written chunk for a later read, unless enough are kept or it
    /// grew unusually large (a long line).
    pub fn give(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() < READ_CHUNK || buffer.capacity() > 2 * READ_CHUNK {
            return;
        }
        buffer.clear();
        let mut spare = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < SPARE {
            spare.push(buffer);
        }
    }
}
