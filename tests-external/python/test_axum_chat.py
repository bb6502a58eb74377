"""Blaze mounted on axum (examples/src/bin/axum_chat.rs, built with
`--features axum` by scripts/test-external.sh): the Python `websockets`
client chats through axum's port while axum serves its REST API there,
and Ctrl-C closes the chat with 1001 and stops the process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import HOST, ROOT, _die_with_parent
from wshelp import connect, recv, run


def binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "debug" / "axum_chat"


@pytest.fixture
def axum_chat():
    path = binary()
    if not path.exists():
        pytest.fail(f"{path} not found: build it with `cargo build -p blaze-examples --features axum --bin axum_chat`")
    proc = subprocess.Popen(
        [str(path), "--addr", f"{HOST}:0"],
        preexec_fn=_die_with_parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://[^\s]*:(\d+)", line)
        assert match, f"unexpected first line: {line!r}"
        yield proc, int(match.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


def get_json(port: int, path: str):
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("application/json")
        return json.loads(resp.read())


def test_chat_and_rest_share_axums_port_and_ctrl_c_closes_with_1001(axum_chat):
    proc, port = axum_chat
    assert get_json(port, "/api/health") == {"status": "ok"}

    async def main():
        url = f"ws://{HOST}:{port}/chat"
        async with connect(url) as ann, connect(url) as bob:
            # Blaze negotiated permessage-deflate through axum.
            assert "permessage-deflate" in ann.response.headers["sec-websocket-extensions"]
            stats = await asyncio.to_thread(get_json, port, "/api/stats")
            assert stats["online"] == 2
            await ann.send(json.dumps({"name": "ann", "text": "hello through axum"}))
            for ws in (ann, bob):
                assert json.loads(await recv(ws)) == {"type": "join", "name": "ann", "online": 2}
                assert json.loads(await recv(ws)) == {"type": "message", "name": "ann", "text": "hello through axum"}
            proc.send_signal(signal.SIGINT)
            codes = []
            for ws in (ann, bob):
                try:
                    message = await recv(ws, 10)
                    codes.append(f"message {message!r}")
                except ConnectionClosed as closed:
                    codes.append(closed.rcvd.code if closed.rcvd else None)
            return codes

    assert run(main(), 30) == [1001, 1001]
    assert proc.wait(timeout=15) == 0
