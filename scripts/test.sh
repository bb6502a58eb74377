#!/usr/bin/env bash
# The whole test suite: the Rust workspace's tests (unit, proptest, doc,
# end-to-end over loopback with the tungstenite client), then the external
# clients (Python websockets, Node ws, headless Chromium) against our
# servers. Installs what the external tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
bash scripts/install-test-deps.sh

echo "== blaze-proto stays sans-io (no clock, threads or sockets in the library)"
(cd blaze-proto && cargo clippy --lib -- -D clippy::disallowed-methods -D clippy::disallowed-types)

echo "== cargo test --workspace"
cargo test --workspace

echo "== external clients"
bash scripts/test-external.sh
