"""permessage-deflate (RFC 7692) on the conformance server's /deflate*
routes, driven by Python `websockets` (its own zlib-based extension) and by
hand over a raw socket (frames masked and deflated here with Python's zlib)
for what a real client will not send.

Routes (see blaze-tokio/examples/conformance_server.rs):
- /deflate: shared mode (no context either way), threshold 0
- /deflate-dedicated: dedicated mode (context takeover), window 15
- /deflate-dedicated-10: dedicated mode, window 10
- /deflate-small: shared mode, max_message_size 64 KiB
- /deflate-uncompressed: shared mode, replies with send_uncompressed
- /deflate-info: on open sends {"compressed": bool}
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import threading
import time
import zlib

import pytest
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from conftest import start_server, stop_server
from wshelp import HOST, connect, parse_head, recv, run, upgrade_request

TAIL = b"\x00\x00\xff\xff"

# route -> (shared mode?, the route's window)
ROUTES = {
    "/deflate": (True, 15),
    "/deflate-dedicated": (False, 15),
    "/deflate-dedicated-10": (False, 10),
}



def expected_answer(path: str, snct: bool, cnct: bool, smwb: int | None, cmwb) -> str:
    """The Sec-WebSocket-Extensions Blaze must answer (negotiate.rs):
    shared mode imposes no context takeover both ways and keeps the offered
    windows; dedicated mode answers each window as the smaller of offer and
    route, announcing a route window < 15 even when not asked for (the
    client's only if the offer carried client_max_window_bits)."""
    shared, window = ROUTES[path]
    parts = ["permessage-deflate"]
    if shared or snct:
        parts.append("server_no_context_takeover")
    if shared or cnct:
        parts.append("client_no_context_takeover")
    if smwb is not None:
        parts.append(f"server_max_window_bits={min(smwb, window)}")
    elif window < 15:
        parts.append(f"server_max_window_bits={window}")
    if cmwb is True:
        if window < 15:
            parts.append(f"client_max_window_bits={window}")
    elif cmwb is not None:
        parts.append(f"client_max_window_bits={min(cmwb, window)}")
    return "; ".join(parts)


def text_of(size: int) -> str:
    """Exactly `size` UTF-8 bytes, non-ASCII mixed in, repetitive enough
    that a kept context (takeover) finds matches across messages."""
    pieces = ["héllo ", "wörld ", "日本語 ", "😀", "deflate ", "—"]
    out, n, i = [], 0, 0
    while True:
        p = pieces[i % len(pieces)]
        if n + len(p.encode()) > size:
            break
        out.append(p)
        n += len(p.encode())
        i += 1
    out.append("x" * (size - n))
    s = "".join(out)
    assert len(s.encode()) == size
    return s


def binary_of(size: int, seed: int) -> bytes:
    """Half repetitive, half random (incompressible) bytes."""
    rnd = os.urandom(size)
    return bytes(rnd[i] if (i // 4096) % 2 else (i * seed) % 251 for i in range(size))


SIZES = [0, 1, 100, 10 * 1024, 200 * 1024]
MESSAGES = [text_of(n) for n in SIZES] + [binary_of(n, 7) for n in SIZES]
NONEMPTY = [m for m in MESSAGES if len(m)]


async def echo_all(ws, messages):
    # One at a time, then the same again (a kept context now has history),
    # then all in flight at once.
    for m in messages + messages:
        await ws.send(m)
        got = await recv(ws, timeout=10)
        assert type(got) is type(m), f"{len(m)}-byte {type(m).__name__} came back as {type(got).__name__}"
        assert got == m, f"{len(m)}-byte {type(m).__name__} echo differs"
    for m in messages:
        await ws.send(m)
    back = [await recv(ws, timeout=10) for _ in messages]
    assert back == messages


def dconnect(url: str, **kwargs):
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("max_size", 4 << 20)
    return connect(url, **kwargs)


# ---- websockets' client, default offer ------------------------------------


@pytest.mark.parametrize("path", list(ROUTES))
def test_default_offer_negotiates_and_echoes(server, path):
    # websockets' default offer: permessage-deflate; client_max_window_bits
    async def main():
        async with dconnect(server.ws + path, compression="deflate") as ws:
            assert ws.response.headers["Sec-WebSocket-Extensions"] == expected_answer(path, False, False, None, True)
            assert [type(e).__name__ for e in ws.protocol.extensions] == ["PerMessageDeflate"]
            await echo_all(ws, NONEMPTY)

    run(main(), timeout=60)


@pytest.mark.parametrize("path", list(ROUTES))
def test_default_offer_echoes_every_size_incl_empty(server, path):
    async def main():
        async with dconnect(server.ws + path, compression="deflate") as ws:
            await echo_all(ws, MESSAGES)

    run(main(), timeout=60)


# ---- websockets' client, explicit offers ----------------------------------

# (server_max_window_bits, client_max_window_bits) offered; True: the bare
# client_max_window_bits parameter, None: absent.
WINDOWS = [(None, None), (None, True)] + [(b, b) for b in range(9, 16)] + [(9, 15), (15, 9), (12, True), (None, 11)]
TAKEOVERS = [(False, False), (True, False), (False, True), (True, True)]


def offer_cases():
    for path in ROUTES:
        for smwb, cmwb in WINDOWS:
            for snct, cnct in TAKEOVERS:
                yield pytest.param(
                    path, smwb, cmwb, snct, cnct, id=f"{path[1:]}-s{smwb}-c{cmwb}-snct{int(snct)}-cnct{int(cnct)}"
                )


def factory(smwb, cmwb, snct, cnct):
    return ClientPerMessageDeflateFactory(
        server_no_context_takeover=snct,
        client_no_context_takeover=cnct,
        server_max_window_bits=smwb,
        client_max_window_bits=cmwb,
    )


@pytest.mark.parametrize("path,smwb,cmwb,snct,cnct", list(offer_cases()))
def test_explicit_offer(server, path, smwb, cmwb, snct, cnct):
    async def main():
        async with dconnect(server.ws + path, compression=None, extensions=[factory(smwb, cmwb, snct, cnct)]) as ws:
            assert ws.response.headers["Sec-WebSocket-Extensions"] == expected_answer(path, snct, cnct, smwb, cmwb)
            assert len(ws.protocol.extensions) == 1
            await echo_all(ws, MESSAGES)

    run(main(), timeout=90)


def test_deflate_info_reports_negotiation(server):
    async def main():
        async with dconnect(server.ws + "/deflate-info", compression="deflate") as ws:
            assert json.loads(await recv(ws)) == {"compressed": True}
        async with dconnect(server.ws + "/deflate-info", compression=None) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            assert json.loads(await recv(ws)) == {"compressed": False}

    run(main())


def test_uncompressed_client_on_deflate_route(server):
    async def main():
        async with dconnect(server.ws + "/deflate", compression=None) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await echo_all(ws, MESSAGES)

    run(main(), timeout=60)


# ---- raw socket ------------------------------------------------------------


class Raw:
    """A hand-driven client connection: masked frames out, frames in."""

    def __init__(self, port: int, path: str, extensions: str | None = "permessage-deflate", timeout: float = 5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        extra = {"Sec-WebSocket-Extensions": extensions} if extensions is not None else {}
        self.sock.sendall(upgrade_request(path, port, extra))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"server closed during handshake: {data!r}")
            data += chunk
        self.status, self.headers, self.buf, _ = parse_head(data)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False):
        b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        n = len(payload)
        if n < 126:
            head = bytes([b0, 0x80 | n])
        elif n < 65536:
            head = bytes([b0, 0x80 | 126]) + struct.pack("!H", n)
        else:
            head = bytes([b0, 0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        # XOR with a repeated mask, fast for big payloads.
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big") if n else 0
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
        self.sock.sendall(head + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed with {len(self.buf)} of {n} bytes")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> tuple[bool, bool, int, bytes]:
        """(fin, rsv1, opcode, payload)"""
        b0, b1 = self._read(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, self._read(n)

    def read_close(self) -> tuple[int, str]:
        """Reads frames until a close; returns its code and reason."""
        while True:
            _fin, _rsv1, opcode, payload = self.read_frame()
            if opcode == 0x8:
                assert len(payload) >= 2, f"close without a code: {payload!r}"
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def deflate(data: bytes, compressor=None) -> bytes:
    c = compressor or zlib.compressobj(wbits=-15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(payload: bytes, decompressor=None) -> bytes:
    d = decompressor or zlib.decompressobj(-15)
    return d.decompress(payload + TAIL)


def test_raw_reply_is_compressed_with_rsv1(server):
    text = "compress me, compress me, compress me — ünïcödé ✓ " * 20
    with Raw(server.port, "/deflate") as c:
        assert c.status == 101
        assert c.headers["sec-websocket-extensions"] == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        )
        c.send_frame(0x1, deflate(text.encode()), rsv1=True)
        fin, rsv1, opcode, payload = c.read_frame()
        assert (fin, rsv1, opcode) == (True, True, 0x1)
        assert len(payload) < len(text.encode())
        assert inflate(payload).decode() == text
        # A binary message, and an uncompressed one (compression is per message).
        data = b"\x00\x01\x02" * 1000
        c.send_frame(0x2, deflate(data), rsv1=True)
        fin, rsv1, opcode, payload = c.read_frame()
        assert (fin, rsv1, opcode) == (True, True, 0x2)
        assert inflate(payload) == data
        c.send_frame(0x1, b"plain", rsv1=False)
        fin, rsv1, opcode, payload = c.read_frame()
        # Threshold 0: the reply is compressed whatever the request was.
        assert (fin, rsv1, opcode) == (True, True, 0x1)
        assert inflate(payload) == b"plain"


def test_raw_fragmented_compressed_message(server):
    text = ("fragmented and deflated ✓ " * 400).encode()
    body = deflate(text)
    third = len(body) // 3
    with Raw(server.port, "/deflate") as c:
        c.send_frame(0x1, body[:third], fin=False, rsv1=True)
        c.send_frame(0x0, body[third : 2 * third], fin=False)
        c.send_frame(0x0, body[2 * third :], fin=True)
        fin, rsv1, opcode, payload = c.read_frame()
        assert (fin, rsv1, opcode) == (True, True, 0x1)
        assert inflate(payload) == text


def test_raw_uncompressed_route_replies_without_rsv1(server):
    text = "send me back uncompressed " * 20
    with Raw(server.port, "/deflate-uncompressed") as c:
        assert c.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        c.send_frame(0x1, deflate(text.encode()), rsv1=True)
        fin, rsv1, opcode, payload = c.read_frame()
        assert (fin, rsv1, opcode) == (True, False, 0x1)
        assert payload.decode() == text


def test_raw_dedicated_keeps_context_both_ways(server):
    # Our compressor keeps its context (takeover), so the second message
    # refers back into the first; the server's replies must be inflated
    # with one decompressor kept across messages.
    comp = zlib.compressobj(wbits=-15)
    decomp = zlib.decompressobj(-15)
    text = ("context takeover, context takeover ✓ " * 30).encode()
    with Raw(server.port, "/deflate-dedicated") as c:
        assert c.headers["sec-websocket-extensions"] == "permessage-deflate"
        sizes = []
        for _ in range(3):
            c.send_frame(0x1, deflate(text, comp), rsv1=True)
            fin, rsv1, opcode, payload = c.read_frame()
            assert (fin, rsv1, opcode) == (True, True, 0x1)
            assert inflate(payload, decomp) == text
            sizes.append(len(payload))
        assert sizes[1] < sizes[0], f"the server kept no context: reply sizes {sizes}"


def test_raw_dedicated_empty_message_after_another(server):
    # Regression: zlib's sync flush with no new input emits nothing, so an
    # empty message after another once went out as RSV1 + an empty payload,
    # which zlib inflaters reject ('invalid stored block lengths'); it must
    # be the single byte 0x00 (RFC 7692 §7.2.3.6) and keep both contexts in step.
    comp = zlib.compressobj(wbits=-15)
    decomp = zlib.decompressobj(-15)
    with Raw(server.port, "/deflate-dedicated") as c:
        for msg in [b"hello", b"", b"", b"hello"]:
            c.send_frame(0x1, deflate(msg, comp), rsv1=True)
            fin, rsv1, opcode, payload = c.read_frame()
            assert (fin, opcode) == (True, 0x1)
            if rsv1:
                assert payload != b"", f"compressed {msg!r} echoed as an empty RSV1 payload"
                assert inflate(payload, decomp) == msg
            else:
                assert payload == msg


# ---- hostile input ---------------------------------------------------------


def test_raw_rsv1_on_continuation_is_1002(server):
    with Raw(server.port, "/deflate") as c:
        body = deflate(b"first part and second part")
        c.send_frame(0x1, body[:5], fin=False, rsv1=True)
        c.send_frame(0x0, body[5:], fin=True, rsv1=True)
        assert c.read_close()[0] == 1002


def test_raw_corrupt_deflate_is_1002(server):
    with Raw(server.port, "/deflate") as c:
        c.send_frame(0x1, b"\xff\xff\xff\xff\x00\x13", rsv1=True)
        assert c.read_close()[0] == 1002


def test_raw_compressed_invalid_utf8_is_1007(server):
    with Raw(server.port, "/deflate") as c:
        c.send_frame(0x1, deflate(b"valid prefix \xff\xfe\xc3\x28 invalid"), rsv1=True)
        assert c.read_close()[0] == 1007


def test_raw_rsv1_without_negotiation_is_1002(server):
    with Raw(server.port, "/deflate", extensions=None) as c:
        assert c.status == 101 and "sec-websocket-extensions" not in c.headers
        c.send_frame(0x1, deflate(b"not negotiated"), rsv1=True)
        assert c.read_close()[0] == 1002


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def bomb(size: int) -> bytes:
    c = zlib.compressobj(level=9, wbits=-15)
    chunk = bytes(1 << 20)
    parts = [c.compress(chunk) for _ in range(size >> 20)]
    parts.append(c.flush(zlib.Z_SYNC_FLUSH))
    out = b"".join(parts)
    assert out.endswith(TAIL)
    return out[:-4]


@pytest.fixture
def bomb_server():
    srv = start_server()
    try:
        yield srv
    finally:
        stop_server(srv.proc)


@pytest.mark.parametrize(
    "inflated,fragment",
    [
        (10 << 20, None),  # ~10 KiB on the wire, one frame: under the limit until inflated
        (100 << 20, 16 << 10),  # ~100 KiB on the wire in 16 KiB fragments
    ],
    ids=["10MiB-one-frame", "100MiB-fragmented"],
)
def test_compression_bomb_is_1009_and_bounded(bomb_server, inflated, fragment):
    srv = bomb_server
    body = bomb(inflated)
    assert len(body) < inflated // 500

    async def echo_once(ws, text):
        await ws.send(text)
        assert await recv(ws) == text

    async def main():
        # Warm up both routes, then measure.
        async with dconnect(srv.ws + "/deflate-small") as ws:
            await echo_once(ws, "warm up " * 100)
        bystander = await dconnect(srv.ws + "/deflate").__aenter__()
        try:
            await echo_once(bystander, "before the bomb " * 50)
            rss_before = vm_rss_kib(srv.proc.pid)

            def throw():
                with Raw(srv.port, "/deflate-small", timeout=10) as c:
                    assert c.headers["sec-websocket-extensions"].startswith("permessage-deflate")
                    try:
                        if fragment is None:
                            c.send_frame(0x2, body, rsv1=True)
                        else:
                            pieces = [body[i : i + fragment] for i in range(0, len(body), fragment)]
                            for i, piece in enumerate(pieces):
                                c.send_frame(0x2 if i == 0 else 0x0, piece, fin=i == len(pieces) - 1, rsv1=i == 0)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the server stopped reading after its close: fine
                    return c.read_close()

            result = {}
            thrower = threading.Thread(target=lambda: result.update(close=throw()), daemon=True)
            thrower.start()
            # Served while the bomb is processed.
            for i in range(5):
                await echo_once(bystander, f"while the bomb goes off {i} " * 20)
            await asyncio.to_thread(thrower.join, 20)
            assert not thrower.is_alive(), "no close for the bomb within 20 s"
            assert result["close"][0] == 1009, f"bomb closed with {result['close']}"
            rss_after = vm_rss_kib(srv.proc.pid)
            grew = (rss_after - rss_before) / 1024
            assert grew < 32, f"RSS grew by {grew:.1f} MiB ({rss_before} -> {rss_after} KiB)"
            await echo_once(bystander, "after the bomb " * 50)
        finally:
            await bystander.close()
        # And a fresh connection is served too.
        async with dconnect(srv.ws + "/deflate") as ws:
            await echo_all(ws, NONEMPTY[:3])
        srv.wait_for_close(lambda e: e["path"] == "/deflate-small" and e["code"] == 1009, timeout=5)

    run(main(), timeout=60)


# ---- offers by hand --------------------------------------------------------


@pytest.mark.parametrize(
    "path,answer",
    [
        ("/deflate", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("/deflate-dedicated", "permessage-deflate"),
        ("/deflate-dedicated-10", "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"),
    ],
)
def test_browser_like_offer(server, path, answer):
    # What Chromium and Firefox send.
    with Raw(server.port, path, extensions="permessage-deflate; client_max_window_bits") as c:
        assert c.status == 101
        assert c.headers["sec-websocket-extensions"] == answer


@pytest.mark.parametrize(
    "path,answer",
    [
        ("/deflate", "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"),
        ("/deflate-dedicated", "permessage-deflate; server_max_window_bits=12"),
        ("/deflate-dedicated-10", "permessage-deflate; server_max_window_bits=10"),
    ],
)
def test_eight_bit_server_window_falls_back_to_next_offer(server, path, answer):
    offer = "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=12"
    with Raw(server.port, path, extensions=offer) as c:
        assert c.status == 101
        assert c.headers["sec-websocket-extensions"] == answer
        # And the fallback really is what the server compresses with.
        text = ("window twelve " * 500).encode()
        c.send_frame(0x1, deflate(text), rsv1=True)
        fin, rsv1, opcode, payload = c.read_frame()
        assert (fin, rsv1, opcode) == (True, True, 0x1)
        bits = int(answer.rsplit("=", 1)[1])
        assert inflate(payload, zlib.decompressobj(-bits)) == text


@pytest.mark.parametrize("path", ["/deflate", "/deflate-dedicated"])
@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; foo=1",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_no_context_takeover=1",
        "x-webkit-deflate-frame",
    ],
)
def test_invalid_offer_is_101_without_extension(server, path, offer):
    with Raw(server.port, path, extensions=offer) as c:
        assert c.status == 101
        assert "sec-websocket-extensions" not in c.headers
        c.send_frame(0x1, b"plain text")
        fin, rsv1, opcode, payload = c.read_frame()
        assert (fin, rsv1, opcode, payload) == (True, False, 0x1, b"plain text")


def test_invalid_offer_then_valid_fallback(server):
    offer = "permessage-deflate; foo=1, permessage-deflate; client_no_context_takeover"
    with Raw(server.port, "/deflate-dedicated", extensions=offer) as c:
        assert c.headers["sec-websocket-extensions"] == "permessage-deflate; client_no_context_takeover"
