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
pub mod server;

/// Every fuzz target, by the name of its `fuzz_targets/<name>.rs` and of
/// its seed directory `seeds/<name>/`.
pub const TARGETS: [&str; 6] =
    ["frame_decode", "handshake_request", "handshake_response", "connection", "inflate", "server"];

/// Runs one input through the harness the fuzz target `target` calls,
/// exactly as libFuzzer hands it over (for `connection`, parsed with
/// `Arbitrary::arbitrary_take_rest`, as `fuzz_target!` does; an input that
/// does not parse is skipped there and is an error here).
pub fn run_target(target: &str, data: &[u8]) {
    match target {
        "frame_decode" => frame::frame_decode(data),
        "handshake_request" => handshake::handshake_request(data),
        "handshake_response" => handshake::handshake_response(data),
        "connection" => {
            let input = connection::ConnInput::parse(data).expect("a connection input that does not parse");
            connection::Harness::run(&input)
        }
        "inflate" => inflate::inflate(data),
        "server" => {
            let input = server::ServerInput::parse(data).expect("a server input that does not parse");
            server::Harness::run(&input)
        }
        other => panic!("no fuzz target {other:?}"),
    }
}

/// `cargo test` replays the committed seed corpus: every file under
/// `seeds/<target>/` through its target's harness.
#[cfg(test)]
mod seed_replay {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::PathBuf;

    fn replay(target: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        paths.sort();
        assert!(!paths.is_empty(), "no seeds in {}", dir.display());
        let mut failed = Vec::new();
        for path in &paths {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if catch_unwind(AssertUnwindSafe(|| super::run_target(target, &data))).is_err() {
                failed.push(path.display().to_string());
            }
        }
        assert!(failed.is_empty(), "{target}: {} of {} seeds fail their harness: {failed:#?}", failed.len(), paths.len());
    }

    #[test]
    fn every_target_has_a_seed_directory() {
        for target in super::TARGETS {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
            assert!(dir.is_dir(), "{} missing", dir.display());
        }
    }

    #[test]
    fn frame_decode_seeds() {
        replay("frame_decode");
    }

    #[test]
    fn handshake_request_seeds() {
        replay("handshake_request");
    }

    #[test]
    fn handshake_response_seeds() {
        replay("handshake_response");
    }

    #[test]
    fn connection_seeds() {
        replay("connection");
    }

    #[test]
    fn inflate_seeds() {
        replay("inflate");
    }

    #[test]
    fn server_seeds() {
        replay("server");
    }
}
