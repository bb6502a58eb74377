//! See `blaze_fuzz::inflate::inflate` for the input layout and what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| blaze_fuzz::inflate::inflate(data));
