"""wss with Python's `websockets` (and its `ssl` module, i.e. OpenSSL) against
the echo example serving TLS (`--tls-cert`/`--tls-key`), on both runtimes,
with a throwaway CA made by tests-external/gen-test-cert.sh.

The echo example must be built with `--features tls`
(scripts/test-external.sh does it)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HOST, ROOT, _die_with_parent, stop_server
from wshelp import connect, recv, run

START_TIMEOUT = 15.0


def echo_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "debug" / "echo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"echo exited early (code {proc.returncode})")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"echo is not listening on {HOST}:{port}")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", str(ROOT / "tests-external" / "gen-test-cert.sh"), str(directory)], check=True)
    return directory


@pytest.fixture(scope="module", params=["tokio", "async-std"])
def tls_echo(request, certs):
    """The echo example serving wss on a free port; yields its port."""
    binary = echo_binary()
    if not binary.exists():
        pytest.fail(f"{binary} not found: cargo build -p blaze-examples --features tls --bins")
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "--addr", f"{HOST}:{port}", "--runtime", request.param,
         "--tls-cert", str(certs / "cert.pem"), "--tls-key", str(certs / "key.pem")],
        preexec_fn=_die_with_parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        stop_server(proc)


def trusting(certs: Path) -> ssl.SSLContext:
    """A client context trusting only the test CA, hostname checked."""
    return ssl.create_default_context(cafile=str(certs / "ca.pem"))


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_echo_over_wss(tls_echo, certs, host):
    async def main():
        async with connect(f"wss://{host}:{tls_echo}/echo", ssl=trusting(certs)) as ws:
            await ws.send("hello over tls")
            assert await recv(ws) == "hello over tls"
            payload = os.urandom(1 << 20)  # more than one TLS record and socket buffer
            await ws.send(payload)
            assert await recv(ws, timeout=10) == payload
            msgs = [f"m{i}" for i in range(50)]
            for m in msgs:
                await ws.send(m)
            assert [await recv(ws) for _ in msgs] == msgs

    run(main())


def test_broadcast_over_wss(tls_echo, certs):
    async def main():
        url = f"wss://localhost:{tls_echo}/broadcast"
        async with connect(url, ssl=trusting(certs)) as a, connect(url, ssl=trusting(certs)) as b, \
                connect(url, ssl=trusting(certs)) as c:
            await asyncio.sleep(0.2)  # all three registered before the broadcast
            await a.send("to everyone")
            for ws in (a, b, c):
                assert await recv(ws) == "to everyone"

    run(main())


def test_alpn_is_http_1_1(tls_echo, certs):
    """Offered h2 first, as browsers do: the server still picks http/1.1."""
    context = trusting(certs)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((HOST, tls_echo), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() in ("TLSv1.3", "TLSv1.2")


def test_client_without_the_ca_refuses_the_server(tls_echo):
    """The default trust store does not know the test CA: verification is real."""

    async def main():
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(f"wss://localhost:{tls_echo}/echo", ssl=ssl.create_default_context()):
                pass

    run(main())


def test_stalled_handshakes_hold_nobody_up(tls_echo, certs):
    """TCP connections that never send a ClientHello; a real client after them
    is served at once (the echo example's handshake timeout is 10 s)."""
    stalled = [socket.create_connection((HOST, tls_echo), timeout=5) for _ in range(5)]
    try:
        started = time.monotonic()

        async def main():
            async with connect(f"wss://localhost:{tls_echo}/echo", ssl=trusting(certs)) as ws:
                await ws.send("not held up")
                assert await recv(ws) == "not held up"

        run(main())
        assert time.monotonic() - started < 8, "the client waited for the stalled handshakes"
        for sock in stalled:
            sock.settimeout(0.05)
            with pytest.raises((TimeoutError, socket.timeout)):
                sock.recv(1)  # still open: nothing closed them early
    finally:
        for sock in stalled:
            sock.close()
