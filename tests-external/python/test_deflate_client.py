"""Our client, their server: Blaze's client (blaze-tokio/examples/deflate_client.rs,
built by scripts/test-external.sh) offering permessage-deflate to a Python
`websockets` echo server with its own zlib-based extension, parametrized
over that server's ServerPerMessageDeflateFactory settings.

The example sends text and binary messages of 0 bytes to 200 KiB, checks
every echo and prints one JSON line; the server side records, per data
frame it receives, whether RSV1 (compressed) was set.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from websockets.asyncio.server import serve
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Opcode

from conftest import HOST, ROOT
from wshelp import run

# What the example sends (see deflate_client.rs: 7 sizes × text/binary × 2
# rounds, plus 20 small JSON texts).
MESSAGES = 7 * 2 * 2 + 20

def client_binary() -> Path:
    explicit = os.environ.get("BLAZE_DEFLATE_CLIENT")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "debug" / "examples" / "deflate_client"


class Recording(Extension):
    """Wraps the negotiated PerMessageDeflate, noting RSV1 of every
    incoming first data frame before it is inflated."""

    def __init__(self, inner: Extension, rsv1: list[bool]):
        self.inner = inner
        self.name = inner.name
        self.rsv1 = rsv1

    def decode(self, frame, *, max_size=None):
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self.rsv1.append(frame.rsv1)
        return self.inner.decode(frame, max_size=max_size)

    def encode(self, frame):
        return self.inner.encode(frame)


class RecordingFactory(ServerPerMessageDeflateFactory):
    def __init__(self, rsv1: list[bool], **kwargs):
        super().__init__(**kwargs)
        self.rsv1 = rsv1

    def process_request_params(self, params, accepted_extensions):
        response, extension = super().process_request_params(params, accepted_extensions)
        return response, Recording(extension, self.rsv1)


async def run_client(factory_kwargs: dict, mode: str, window: int) -> tuple[dict, dict]:
    """Runs the example against a fresh echo server; returns the example's
    JSON line and what the server saw."""
    binary = client_binary()
    if not binary.exists():
        pytest.fail(f"{binary} not found: build it with `cargo build -p blaze-tokio --example deflate_client`")
    rsv1: list[bool] = []
    seen: dict = {"connections": 0}

    async def echo(ws):
        seen["connections"] += 1
        seen["request"] = ws.request.headers.get("Sec-WebSocket-Extensions")
        seen["response"] = ws.response.headers.get("Sec-WebSocket-Extensions")
        seen["extensions"] = [type(e).__name__ for e in ws.protocol.extensions]
        try:
            async for message in ws:
                await ws.send(message)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            seen["error"] = repr(exc)
            raise

    factory = RecordingFactory(rsv1, **factory_kwargs)
    async with serve(echo, HOST, 0, compression=None, extensions=[factory], max_size=4 << 20, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            str(binary),
            "--url",
            f"ws://{HOST}:{port}/",
            "--mode",
            mode,
            "--window",
            str(window),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    lines = out.decode().strip().splitlines()
    assert lines, f"deflate_client printed nothing (exit {proc.returncode}); server saw {seen}"
    report = json.loads(lines[-1])
    seen["rsv1"] = rsv1
    seen["exit"] = proc.returncode
    return report, seen


def check(report: dict, seen: dict):
    assert report.get("ok") is True, f"client report {report}; server saw {seen}"
    assert seen["exit"] == 0
    assert report["messages"] == MESSAGES
    assert seen["connections"] == 1
    # Negotiated on both sides, and the same answer.
    assert seen["extensions"] == ["Recording"], seen
    assert seen["response"] and seen["response"].startswith("permessage-deflate")
    assert report["extensions"] == seen["response"]
    assert report["compressed"] is True
    # Threshold 0: every message the client sent was compressed.
    assert len(seen["rsv1"]) == MESSAGES, seen["rsv1"]
    assert all(seen["rsv1"]), f"uncompressed frames at {[i for i, r in enumerate(seen['rsv1']) if not r]}"


WINDOWS = [(None, None)] + [(b, b) for b in range(9, 16)] + [(9, 15), (15, 9)]
TAKEOVERS = [(False, False), (True, False), (False, True), (True, True)]
CLIENTS = [("shared", 15), ("dedicated", 15), ("dedicated", 10)]


def cases():
    for mode, window in CLIENTS:
        for smwb, cmwb in WINDOWS:
            for snct, cnct in TAKEOVERS:
                yield pytest.param(
                    mode,
                    window,
                    dict(
                        server_max_window_bits=smwb,
                        client_max_window_bits=cmwb,
                        server_no_context_takeover=snct,
                        client_no_context_takeover=cnct,
                    ),
                    id=f"{mode}{window}-s{smwb}-c{cmwb}-snct{int(snct)}-cnct{int(cnct)}",
                )


@pytest.mark.parametrize("mode,window,factory_kwargs", list(cases()))
def test_blaze_client_against_websockets_server(mode, window, factory_kwargs):
    report, seen = run(run_client(factory_kwargs, mode, window), timeout=90)
    check(report, seen)
    ext = seen["response"]
    # What the server imposed is in the answer the client accepted.
    if factory_kwargs["server_no_context_takeover"]:
        assert "server_no_context_takeover" in ext
    if factory_kwargs["client_no_context_takeover"] or mode == "shared":
        assert "client_no_context_takeover" in ext
    if factory_kwargs["client_max_window_bits"] is not None:
        want = min(factory_kwargs["client_max_window_bits"], window if mode == "dedicated" else 15)
        assert f"client_max_window_bits={want}" in ext


@pytest.mark.parametrize(
    "mode,window",
    [("shared", 15), ("dedicated", 15), ("dedicated", 12)],
)
def test_server_requiring_client_max_window_bits(mode, window):
    # Blaze always offers client_max_window_bits, so a server that requires
    # it still accepts.
    report, seen = run(
        run_client(dict(client_max_window_bits=11, require_client_max_window_bits=True), mode, window), timeout=90
    )
    check(report, seen)
    assert f"client_max_window_bits={min(11, window)}" in seen["response"]


@pytest.mark.parametrize("mode,window", [("shared", 15), ("dedicated", 15), ("dedicated", 9)])
def test_blaze_client_context_takeover_with_client_no_context(mode, window):
    # A server that asks the client for no context: Blaze's dedicated client
    # must then reset its compressor per message.
    report, seen = run(run_client(dict(client_no_context_takeover=True), mode, window), timeout=90)
    check(report, seen)
    assert "client_no_context_takeover" in seen["response"]
