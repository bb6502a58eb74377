"""Helpers shared by the end-to-end tests: bounded asyncio runs, a
`websockets` client with timeouts, and raw HTTP/WebSocket over a socket
for the cases a real client refuses to produce."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time

from websockets.asyncio.client import connect as _connect

HOST = "127.0.0.1"


def run(coro, timeout: float = 15.0):
    """Runs a coroutine to completion, failing it after `timeout` seconds."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def connect(url: str, **kwargs):
    """`websockets` asyncio client with every wait bounded."""
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 5)
    kwargs.setdefault("max_size", 4 << 20)
    return _connect(url, **kwargs)


async def recv(ws, timeout: float = 5.0):
    return await asyncio.wait_for(ws.recv(), timeout)


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, head: bytes):
        self.status = status
        self.headers = headers
        self.body = body
        self.head = head

    def __repr__(self) -> str:
        return f"RawResponse({self.status}, {self.headers}, {self.body[:200]!r})"


def parse_head(data: bytes) -> tuple[int, dict[str, str], bytes, bytes]:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"incomplete HTTP response head: {data[:300]!r}")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert parts[0].startswith("HTTP/1."), f"not an HTTP response: {lines[0]!r}"
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest, head


def raw_http(port: int, request: bytes, timeout: float = 5.0) -> RawResponse:
    """Sends `request` as is and reads the response until the server closes.

    A reset after the response arrived is tolerated (the bytes read are
    kept); a reset before any byte arrived is an error.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                if not data:
                    raise
                break
            except socket.timeout:
                if b"\r\n\r\n" in data:
                    break  # got a head; the server kept the connection open
                raise
            if not chunk:
                break
            data += chunk
    status, headers, rest, head = parse_head(data)
    return RawResponse(status, headers, rest, head)


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path: str, port: int, extra: dict[str, str] | None = None, version: str = "13") -> bytes:
    headers = {
        "Host": f"{HOST}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": ws_key(),
        "Sec-WebSocket-Version": version,
    }
    headers.update(extra or {})
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw_upgrade(port: int, path: str, timeout: float = 5.0) -> tuple[socket.socket, bytes]:
    """Does the opening handshake by hand; returns the socket and any bytes
    that followed the 101 head. The caller owns (and must close) the socket."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.sendall(upgrade_request(path, port))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise AssertionError(f"server closed during handshake: {data!r}")
            data += chunk
        status, _headers, rest, _ = parse_head(data)
        assert status == 101, f"expected 101 from {path}, got {status}: {data[:300]!r}"
        return sock, rest
    except BaseException:
        sock.close()
        raise
