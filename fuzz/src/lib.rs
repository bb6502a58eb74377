//! The fuzz harnesses of blaze-proto, shared by the libFuzzer targets in
//! `fuzz_targets/` and by the seed generator in `seedgen/`.
//!
//! Every harness takes raw bytes (or a structured input built from them)
//! and panics when an invariant breaks; libFuzzer reports the panic as a
//! crash and saves the input under `fuzz/artifacts/<target>/`.
//!
//! Common conventions: the first byte or bytes of an input are control
//! bytes (roles, limits, how the input is chunked), the rest is what the
//! network delivers. The seed generator writes inputs in the same layout.

pub mod alloc;
pub mod chunks;
pub mod connection;
pub mod frame;
pub mod handshake;
pub mod inflate;
