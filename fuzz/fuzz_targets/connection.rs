//! See `blaze_fuzz::connection` for the input, the steps and what is checked.
#![no_main]

use blaze_fuzz::connection::{ConnInput, Harness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: ConnInput| Harness::run(&input));
