#!/usr/bin/env bash
# The fuzz crate's unit tests, including the replay of every committed seed
# (fuzz/seeds/<target>/*) through its target's harness. The crate is
# outside the workspace (libFuzzer needs nightly), so `cargo test
# --workspace` does not reach it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz-tests.sh: the nightly toolchain is required (rustup toolchain install nightly)" >&2
    exit 1
fi
exec timeout --kill-after=30 1200 cargo +nightly test --no-fail-fast </dev/null
