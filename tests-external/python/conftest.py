"""Fixtures for the end-to-end tests: the conformance server as a subprocess.

The server binary is built by scripts/test-external.sh
(`cargo build -p blaze-tokio --example conformance_server`). Set
BLAZE_CONFORMANCE_SERVER to use another binary, or CARGO_TARGET_DIR if the
target directory is not ./target.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 15.0


def server_binary() -> Path:
    explicit = os.environ.get("BLAZE_CONFORMANCE_SERVER")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "debug" / "examples" / "conformance_server"


@dataclass
class Server:
    """A running conformance_server process."""

    proc: subprocess.Popen
    port: int
    stdout_lines: "queue.Queue[str]" = field(default_factory=queue.Queue)

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def http(self) -> str:
        return f"http://{HOST}:{self.port}"

    def closes(self) -> list[dict]:
        """GET /closes: every on_close the server has recorded so far."""
        with urllib.request.urlopen(f"{self.http}/closes", timeout=5) as resp:
            assert resp.status == 200
            return json.loads(resp.read())

    def wait_for_close(self, predicate, timeout: float = 3.0, skip: int = 0) -> dict:
        """Polls /closes until an entry (after the first `skip`) matches."""
        deadline = time.monotonic() + timeout
        seen: list[dict] = []
        while time.monotonic() < deadline:
            seen = self.closes()[skip:]
            for entry in seen:
                if predicate(entry):
                    return entry
            time.sleep(0.05)
        raise AssertionError(f"no matching /closes entry within {timeout}s; new entries: {seen}")


try:
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc Linux
    _LIBC = None


def _die_with_parent() -> None:
    """In the child: get SIGKILL when pytest dies, even if it is killed
    before its fixtures can clean up (Linux only; elsewhere a no-op)."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_server() -> Server:
    binary = server_binary()
    if not binary.exists():
        pytest.fail(
            f"{binary} not found: build it with "
            "`cargo build -p blaze-tokio --example conformance_server`"
        )
    proc = subprocess.Popen(
        [str(binary), "--addr", f"{HOST}:0"],
        # /panic panics on purpose: its message is enough, no backtrace.
        env={**os.environ, "RUST_BACKTRACE": "0"},
        preexec_fn=_die_with_parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None,  # inherit: panics and warnings show up in pytest's output
        text=True,
        cwd=ROOT,
    )
    lines: "queue.Queue[str]" = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            stop_server(proc)
            pytest.fail(f"conformance_server did not start (exit code {proc.returncode})")
        try:
            line = lines.get(timeout=min(remaining, 0.2))
        except queue.Empty:
            continue
        match = re.search(r"listening on ws://[^\s]*:(\d+)", line)
        if match:
            return Server(proc=proc, port=int(match.group(1)), stdout_lines=lines)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def server():
    """One conformance server shared by a test module."""
    srv = start_server()
    try:
        yield srv
    finally:
        stop_server(srv.proc)


@pytest.fixture
def fresh_server():
    """A conformance server of the test's own (for tests that stop it)."""
    srv = start_server()
    try:
        yield srv
    finally:
        stop_server(srv.proc)
