#!/usr/bin/env bash
# End-to-end tests with clients not written by us: Python `websockets`
# (tests-external/python, pytest), Node `ws` and headless Chromium through
# playwright-core (tests-external/node, node --test). Every server under
# test listens on 127.0.0.1 only.
#
#   bash scripts/install-test-deps.sh   # once, as root
#   bash scripts/test-external.sh       # fails if either runner fails
#
# --install runs scripts/install-test-deps.sh first.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ "${1:-}" = "--install" ]; then
    bash "$root/scripts/install-test-deps.sh" || exit 1
fi

echo "== building the servers under test"
# The examples with TLS (test_tls.py and tls.test.mjs serve wss/https) and axum (test_axum_chat.py).
cargo build -q -p blaze-tokio --example conformance_server --example deflate_client -p blaze-examples --bins \
    --features blaze-examples/tls,blaze-examples/axum || {
    echo "test-external: build failed" >&2
    exit 1
}

# Each runner gets an outer bound too; GNU timeout kills its whole process
# group (the runner, the servers and browsers it started).
status=0

# An empty or shrunken run must not pass: each runner must report at least
# this many passing tests (raise them as tests are added; lower them only
# with the tests that were removed on purpose).
MIN_PYTHON_TESTS=390
MIN_NODE_TESTS=53
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# The number before `word` on the runner's closing lines.
count() { grep -Eo "$1" "$out" | grep -Eo '[0-9]+' | tail -n 1; }

echo "== python: pytest tests-external/python"
if (cd tests-external/python && timeout --kill-after=10 600 python3 -m pytest) 2>&1 | tee "$out"; then
    python_result=passed
else
    python_result="FAILED"
    status=1
fi
passed=$(count '[0-9]+ passed' || true)
if [ "${passed:-0}" -lt "$MIN_PYTHON_TESTS" ]; then
    echo "test-external: pytest passed ${passed:-0} tests, fewer than the $MIN_PYTHON_TESTS expected" >&2
    python_result="FAILED (only ${passed:-0} tests passed)"
    status=1
fi

echo "== node: node --test tests-external/node"
if [ ! -d tests-external/node/node_modules/ws ] || [ ! -d tests-external/node/node_modules/playwright-core ]; then
    echo "tests-external/node/node_modules is incomplete: run scripts/install-test-deps.sh" >&2
    node_result="FAILED (missing deps)"
    status=1
elif (cd tests-external/node && timeout --kill-after=10 600 node --test --test-concurrency=1 ./*.test.mjs) 2>&1 | tee "$out"; then
    node_result=passed
else
    node_result="FAILED"
    status=1
fi
passed=$(count '^# pass [0-9]+' || true)
if [ "$node_result" = passed ] && [ "${passed:-0}" -lt "$MIN_NODE_TESTS" ]; then
    echo "test-external: node passed ${passed:-0} tests, fewer than the $MIN_NODE_TESTS expected" >&2
    node_result="FAILED (only ${passed:-0} tests passed)"
    status=1
fi

echo "== external tests: python $python_result, node $node_result"
exit $status
