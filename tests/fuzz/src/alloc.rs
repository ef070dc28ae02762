//! A global allocator that counts, per thread, the bytes live and the peak,
//! so a check can bound what one call allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes this thread holds now (allocated here, not yet freed here).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The most [`LIVE`] reached since the last [`peak_during`] started.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// The system allocator, counting. Install it with `#[global_allocator]`
/// in the binary that runs the checks.
pub struct Counting;

fn count(delta: isize) {
    // `try_with`: a thread being torn down has no counters left; its
    // allocations are not measured anyway.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; counting only
// touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f`; what it returns, and the most bytes it held at once on this
/// thread beyond what the thread held before. Panics when [`Counting`] is
/// not the global allocator: a bound on a count of zero proves nothing.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let probe = std::hint::black_box(vec![0u8; 64]);
    assert!(
        PEAK.with(Cell::get) >= base + 64,
        "the Counting allocator is not installed: allocations cannot be measured"
    );
    drop(probe);
    PEAK.with(|peak| peak.set(LIVE.with(Cell::get)));
    let result = f();
    let peak = PEAK.with(Cell::get) - base;
    (result, peak.max(0) as usize)
}
