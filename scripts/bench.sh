#!/usr/bin/env bash
# Blaze side by side with peer WebSocket servers (tokio-tungstenite,
# fastwebsockets, axum, uWebSockets inside Bun), all measured by blaze-bench: builds everything, then
# runs bench/compare.py, which writes bench/results/{raw.jsonl,chart.svg} and
# the "Servers side by side" section of BENCHMARKS.md.
#
#   scripts/bench.sh            # full run: 5 scenarios × 3 repetitions × 6 servers (~12-18 min)
#   scripts/bench.sh --quick    # smoke run: short, 1 repetition, BENCHMARKS.md untouched
#   scripts/bench.sh --set deflate [--extra "NAME=PATH ARGS" ...]
#                               # permessage-deflate scenarios (Blaze plain / shared /
#                               # dedicated, plus any --extra peer; see compare.py):
#                               # prints tables, writes bench/results/raw-deflate.jsonl,
#                               # BENCHMARKS.md untouched
#
# Needs root (it sets net.ipv4.tcp_congestion_control=cubic for the run and
# restores the previous value), taskset, 2+ cores. Targets 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building blaze-bench and the blaze echo server"
cargo build --release -p blaze-bench -p blaze-examples

echo "== building the peers (bench/peers, a separate workspace)"
(
    cd bench/peers
    cargo build --release --bin tungstenite-peer --bin fastwebsockets-peer
    cargo build --release --bin axum-peer || echo "warning: axum-peer did not build; compare.py skips it"
)

echo "== installing the Bun peer (uWebSockets inside Bun; bench/peers/bun, from npm)"
if (cd bench/peers/bun && npm ci --no-audit --no-fund </dev/null) && bench/peers/bun/node_modules/.bin/bun --version; then
    :
else
    echo "warning: the bun peer did not install; compare.py skips it"
fi
# uWebSockets' own C++ server is not on any package registry: build one from
# uNetworking/uWebSockets + uSockets sources yourself and pass it with
#   --extra "uWebSockets=/path/to/uws-peer"
# (it must follow the contract in bench/peers/src/lib.rs).

echo "== running bench/compare.py $*"
exec python3 bench/compare.py "$@"
