#!/usr/bin/env bash
# The whole test suite: the Rust workspace's tests (unit, proptest, doc,
# end-to-end over loopback with the tungstenite client, simulations), the
# fuzz crate's own tests with every committed seed replayed, then the
# external clients (Python websockets, Node ws, headless Chromium) against
# our servers. Installs what the external tests need first.
#
# Every step runs even when an earlier one failed, each under an outer
# time bound, and the script exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
step() {
    local name=$1
    shift
    echo "== $name"
    if ! "$@"; then
        echo "!! $name failed"
        failed+=("$name")
    fi
}

# Tests open 1,000+ sockets: take the hard limit, not the usual 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step "installing test dependencies" bash scripts/install-test-deps.sh

step "blaze-proto stays sans-io (no clock, threads or sockets in the library)" \
    bash -c 'cd blaze-proto && cargo clippy --lib -- -D clippy::disallowed-methods -D clippy::disallowed-types'

# --no-fail-fast: one failing test binary does not hide the others'
# results. The bound is far above a normal run (about 5 minutes here).
step "cargo test --workspace" timeout --kill-after=30 2400 cargo test --workspace --no-fail-fast

# The `metrics` feature is off in the workspace build (it must cost
# nothing there); its example is scraped over HTTP here.
step "metrics feature: the Prometheus example scraped after real traffic" \
    timeout --kill-after=30 900 cargo test -p blaze-examples --features metrics --test metrics_endpoint
# Blaze mounted in axum and hyper is behind blaze-tokio's `axum` feature,
# which the default `cargo test` leaves out: its tests, the doctests of
# the feature's modules, and the axum_chat example build here.
step "blaze-tokio --features axum (Blaze inside axum and hyper, HTTP/2)" \
    timeout --kill-after=30 1200 bash -c 'cargo test -p blaze-tokio --features axum --no-fail-fast --test axum --test http2 \
        && cargo test -p blaze-tokio --features axum --doc \
        && cargo build -p blaze-examples --features axum --bin axum_chat'
# rediss:// against a real TLS redis-server (blaze-redis's optional `tls` feature).
step "blaze-redis over TLS" timeout --kill-after=30 900 cargo test -p blaze-redis --features tls --test rediss_tls
# wss (the adapters' `tls` feature, off in the workspace run above): our
# client and server over TLS with a throwaway CA, and the TLS doc examples.
step "cargo test --features tls (wss)" timeout --kill-after=30 1200 bash -c \
    'cargo test -p blaze-tokio -p blaze-async-std --features tls --test tls \
     && cargo test -p blaze-server -p blaze-tokio -p blaze-async-std --features tls --doc'
step "metrics feature: rate-limit, backpressure and close-cause counters" \
    timeout --kill-after=30 900 cargo test -p blaze-tokio --features metrics --test metrics_counters

step "fuzz crate tests and seed replay" bash scripts/fuzz-tests.sh

step "external clients" bash scripts/test-external.sh

if [ ${#failed[@]} -ne 0 ]; then
    echo "test.sh: failed: ${failed[*]}" >&2
    exit 1
fi
