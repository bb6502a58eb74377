//! See `blaze_fuzz::server` for the input, the steps and what is checked.
#![no_main]

use blaze_fuzz::server::{Harness, ServerInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: ServerInput| Harness::run(&input));
