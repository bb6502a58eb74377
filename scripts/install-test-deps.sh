#!/usr/bin/env bash
# Installs what the end-to-end tests in tests-external/ need: Python's
# `websockets` and pytest, the Node packages (`ws`, `playwright-core`),
# Debian's Chromium, and Debian's redis-server (for blaze-redis's tests). Idempotent and non-interactive (CI=true, no stdin);
# run as root on Debian 12 with Python 3, Node 20 and npm on PATH.
#
#   bash scripts/install-test-deps.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CI=true
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

python="${PYTHON:-python3}"

# Python: websockets >= 13 (the tests use its `websockets.asyncio` client,
# new in 13) and pytest.
if "$python" - <<'EOF' 2>/dev/null
import sys
import pytest  # noqa: F401
import websockets
major = int(websockets.__version__.split(".")[0])
sys.exit(0 if major >= 13 else 1)
EOF
then
    echo "python deps: already installed"
else
    echo "python deps: installing websockets, pytest"
    "$python" -m pip install -q "websockets>=13" pytest </dev/null
fi

# Node: exactly what package-lock.json records. `npm ci` wipes and
# reinstalls node_modules, so skip it when the lock file is unchanged since
# the last install.
node_dir="$root/tests-external/node"
stamp="$node_dir/node_modules/.blaze-lock-stamp"
if [ -f "$node_dir/package-lock.json" ]; then
    want="$(sha256sum "$node_dir/package-lock.json" "$node_dir/package.json" | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$node_dir/node_modules/ws" ] \
        && [ -d "$node_dir/node_modules/playwright-core" ]; then
        echo "node deps: already installed"
    else
        echo "node deps: npm ci"
        (cd "$node_dir" && npm ci --no-audit --no-fund </dev/null)
        echo "$want" >"$stamp"
    fi
else
    echo "node deps: no package-lock.json, npm install"
    (cd "$node_dir" && npm install --no-audit --no-fund </dev/null)
fi

# Chromium, from Debian (playwright-core drives it; it never downloads a
# browser of its own).
if [ -x /usr/bin/chromium ]; then
    echo "chromium: already installed"
else
    echo "chromium: installing from apt"
    apt-get update -q </dev/null
    apt-get install -y -q chromium </dev/null
fi

# redis-server, from Debian: blaze-redis's tests (run by `cargo test
# --workspace`) start their own instances of it on free loopback ports.
if [ -x /usr/bin/redis-server ]; then
    echo "redis-server: already installed"
else
    echo "redis-server: installing from apt"
    apt-get update -q </dev/null
    apt-get install -y -q redis-server </dev/null
fi
# openssl: tests-external/gen-test-cert.sh makes the wss tests' throwaway CA,
# and blaze-redis's rediss:// test its own.
if command -v openssl >/dev/null; then
    echo "openssl: already installed"
else
    echo "openssl: installing from apt"
    apt-get update -q </dev/null
    apt-get install -y -q openssl </dev/null
fi

echo "test deps ready"
