"""Echo on the three handler styles: callbacks (/echo), a Handler struct
(/echo-trait) and stream style (/echo-stream)."""

import os

import pytest

from wshelp import connect, recv, run

ECHO_PATHS = ["/echo", "/echo-trait", "/echo-stream"]


@pytest.mark.parametrize("path", ECHO_PATHS)
def test_echo_text_and_binary(server, path):
    async def main():
        async with connect(server.ws + path) as ws:
            await ws.send("hello")
            got = await recv(ws)
            assert got == "hello" and isinstance(got, str)
            payload = os.urandom(1000) + b"\x00\xff"
            await ws.send(payload)
            got = await recv(ws)
            assert isinstance(got, bytes), f"binary came back as {type(got)}"
            assert got == payload
            # Several in flight keep their order and their types.
            msgs = [f"m{i}" if i % 2 else f"m{i}".encode() for i in range(20)]
            for m in msgs:
                await ws.send(m)
            back = [await recv(ws) for _ in msgs]
            assert back == msgs

    run(main())


@pytest.mark.parametrize("path", ECHO_PATHS)
def test_echo_large_text(server, path):
    text = "".join(chr(ord("a") + i % 26) for i in range(200 * 1024))

    async def main():
        async with connect(server.ws + path) as ws:
            await ws.send(text)
            got = await recv(ws, timeout=10)
            assert len(got) == len(text)
            assert got == text

    run(main())


@pytest.mark.parametrize("path", ECHO_PATHS)
def test_echo_multibyte_utf8(server, path):
    # 2-, 3- and 4-byte sequences, combining marks, an emoji ZWJ sequence.
    text = "héllo wörld — ĉu vi? 日本語テキスト 😀👩‍💻 e\u0301 " * 50

    async def main():
        async with connect(server.ws + path) as ws:
            await ws.send(text)
            got = await recv(ws)
            assert got == text
            assert got.encode("utf-8") == text.encode("utf-8")

    run(main())


@pytest.mark.parametrize("path", ECHO_PATHS)
def test_echo_empty_messages(server, path):
    async def main():
        async with connect(server.ws + path) as ws:
            await ws.send("")
            assert await recv(ws) == ""
            await ws.send(b"")
            assert await recv(ws) == b""

    run(main())
