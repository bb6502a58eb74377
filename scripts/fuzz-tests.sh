#!/usr/bin/env bash
# The fuzz crate's unit tests, including the replay of every committed seed
# (fuzz/seeds/<target>/*) through its target's harness. The crate is
# outside the workspace (libFuzzer runs need nightly; these tests build on
# stable), so `cargo test --workspace` does not reach it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
exec timeout --kill-after=30 1200 cargo test --no-fail-fast </dev/null
