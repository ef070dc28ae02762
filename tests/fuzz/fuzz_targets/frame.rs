//! Fuzz target: see `supd_fuzz::frame` for the properties checked.
#![no_main]

/// The frame check measures what the decoder allocates.
#[global_allocator]
static ALLOC: supd_fuzz::alloc::Counting = supd_fuzz::alloc::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| supd_fuzz::frame::check(data));
