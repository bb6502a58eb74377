#!/usr/bin/env bash
# Coverage-guided fuzzing of everything in blaze-proto that reads network
# input, and of the whole server (`server`: blaze-server's App over the
# in-memory harness): libFuzzer through cargo-fuzz, one target at a time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGETs default to all of them
# (frame_decode handshake_request handshake_response connection inflate server). Needs
# the nightly toolchain; installs cargo-fuzz if it is missing. Each target's
# corpus (fuzz/corpus/<target>, gitignored) is seeded from the committed
# fuzz/seeds/<target>; crashes land in fuzz/artifacts/<target>/ and make
# the script exit non-zero; logs go to fuzz/artifacts/logs/<target>.log.
# Works unattended (CI=true, no stdin).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(frame_decode handshake_request handshake_response connection inflate server)
fi
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly toolchain is required (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked </dev/null
fi

echo "== building every fuzz target"
cargo +nightly fuzz build </dev/null

mkdir -p fuzz/artifacts/logs
failed=()
summary=()
for target in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$target"
  log="fuzz/artifacts/logs/$target.log"
  mkdir -p "$corpus"
  # Seeds are copied, never overwritten: the corpus keeps what it found.
  cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  echo "== fuzzing $target for ${SECONDS_PER_TARGET}s (log: $log)"
  status=0
  nice -n 10 cargo +nightly fuzz run "$target" "$corpus" -- \
    -dict=fuzz/websocket.dict \
    -max_total_time="$SECONDS_PER_TARGET" \
    -rss_limit_mb=2048 \
    -timeout=30 \
    -print_final_stats=1 \
    </dev/null >"$log" 2>&1 || status=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  execs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}' | tail -n 1 || true)
  rate=$(grep -E '^stat::average_exec_per_sec:' "$log" | awk '{print $2}' | tail -n 1 || true)
  rss=$(grep -E '^stat::peak_rss_mb:' "$log" | awk '{print $2}' | tail -n 1 || true)
  if [ "$status" -ne 0 ] || [ -z "$done_line" ]; then
    failed+=("$target")
    echo "!! $target failed (exit $status)"
    grep -E 'panicked at|^==[0-9]+==ERROR|SUMMARY:|Test unit written to|^artifact_prefix|Failing input' "$log" | head -n 20 || tail -n 40 "$log"
    summary+=("$target: FAILED (exit $status), see $log")
    echo "fuzz target $target: FAILED"
  else
    echo "$done_line"
    summary+=("$target: $done_line | execs ${execs:-?} | avg exec/s ${rate:-?} | peak rss ${rss:-?} MB")
    echo "fuzz target $target: passed"
  fi
done

echo "== summary (${SECONDS_PER_TARGET}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz.sh: crashes or failures in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
