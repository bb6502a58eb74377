#!/usr/bin/env bash
# Cross-node fan-out through Redis against one node, in the same run
# (BENCHMARKS.md "Cluster: cross-node fan-out"). Starts its own redis-server
# and echo servers on free 127.0.0.1 ports, alternates the two layouts, and
# stops everything at the end.
#
#   scripts/bench-cluster.sh [RUNS (3)] [SUBS (10000)] [MSGS (100)] [RATE (20)]
#
# Per run and layout: one unpaced fan-out (deliveries/s, CPU) and one paced at
# RATE broadcasts/s (latency p50/p99 at a load both layouts keep up with).
# "one": a single echo with every subscriber and the publisher. "two": two
# `echo --redis` nodes, the publisher and every other subscriber on node A,
# the rest on node B. Servers on core 0, blaze-bench and Redis on core 1.
# Prints blaze-bench's JSON lines tagged with the layout.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3} SUBS=${2:-10000} MSGS=${3:-100} RATE=${4:-20}
cargo build --release -q -p blaze-bench && cargo build --release -q -p blaze-examples --bin echo
command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
ulimit -n 20000
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}" ${a:-} ${b:-}; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

redis_port=$(free_port)
taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$(mktemp -d)" >/dev/null &
redis_pid=$!; pids+=("$redis_pid"); wait_port "$redis_port"
redis_cli() { redis-cli -p "$redis_port" "$@"; }

start_echo() { # port [redis url]
    taskset -c 0 target/release/echo --addr "127.0.0.1:$1" ${2:+--redis "$2"} >/dev/null 2>&1 &
    pids+=("$!"); echo "$!"
}
bench() { # layout label args...
    local layout=$1 label=$2; shift 2
    taskset -c 1 target/release/blaze-bench fanout --subs "$SUBS" --msgs "$MSGS" --timeout 180 "$@" \
        | sed -n '/^{/p' | sed "s/^{/{\"layout\":\"$layout\",\"mode\":\"$label\",/"
}
echo "# $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg), $(redis-server --version | cut -d' ' -f1-3)"
for run in $(seq "$RUNS"); do
    for layout in one two; do
        for mode in unpaced paced; do
            pa=$(free_port)
            a=$(start_echo "$pa" "$( [ $layout = two ] && echo "redis://127.0.0.1:$redis_port" )")
            wait_port "$pa"
            args=(--url "ws://127.0.0.1:$pa/broadcast" --pid "$a" --broker-pid "$redis_pid")
            if [ $layout = two ]; then
                pb=$(free_port); b=$(start_echo "$pb" "redis://127.0.0.1:$redis_port"); wait_port "$pb"
                args=(--url "ws://127.0.0.1:$pa/broadcast" --also-url "ws://127.0.0.1:$pb/broadcast" --pid "$a,$b" --broker-pid "$redis_pid")
            fi
            [ $mode = paced ] && args+=(--rate "$RATE")
            redis_cli config resetstat >/dev/null
            bench "$layout" "$mode" "${args[@]}"
            echo "# run $run $layout $mode: redis PUBLISH $(redis_cli info commandstats | grep -o 'cmdstat_publish:[^,]*,[^,]*,usec_per_call=[0-9.]*' || echo none); net in/out $(redis_cli info stats | grep -E 'total_net_(input|output)_bytes' | tr -d '\r' | tr '\n' ' ')"
            kill "$a" ${b:+"$b"} 2>/dev/null || true; wait "$a" ${b:+"$b"} 2>/dev/null || true; b=
            sleep 1
        done
    done
done
