//! Fuzz target: see `supd_fuzz::lines` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| supd_fuzz::lines::check(data));
