"""Panics, heartbeats and close codes, as a real client sees them."""

import asyncio
import json
import socket
import time
import uuid

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.protocol import State

from wshelp import connect, raw_upgrade, recv, run


async def expect_close(ws, timeout: float = 5.0):
    """Waits for the server to close `ws`; returns the close frame it sent."""
    try:
        msg = await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as closed:
        return closed.rcvd
    raise AssertionError(f"expected the server to close, got a message: {msg!r}")


def test_panic_closes_with_1011_and_server_survives(server):
    async def main():
        async with connect(server.ws + "/echo") as bystander:
            await bystander.send("before")
            assert await recv(bystander) == "before"

            async with connect(server.ws + "/panic") as ws:
                await ws.send("not yet")
                assert await recv(ws) == "not yet"
                await ws.send("boom")
                rcvd = await expect_close(ws)
                assert rcvd is not None, "connection dropped without a close frame"
                assert rcvd.code == 1011, f"close code {rcvd.code} {rcvd.reason!r}"

            # The other connection never noticed.
            await bystander.send("after")
            assert await recv(bystander) == "after"

        # The route still serves new connections.
        async with connect(server.ws + "/panic") as again:
            await again.send("still here")
            assert await recv(again) == "still here"

    run(main())


def test_heartbeat_drops_silent_client(server):
    """A client that never answers pings is dropped, not before
    ping_interval (200 ms) + pong_timeout (300 ms) counted from when it
    began to connect; its on_close sees 1006. The upper bound only guards
    against a hang on a loaded machine: the exact bound is asserted on
    virtual time by sim-tests/tests/scenarios/partition.rs."""
    skip = len(server.closes())
    # Before the connection exists: no server deadline can start earlier.
    start = time.monotonic()
    sock, rest = raw_upgrade(server.port, "/heartbeat")
    try:
        sock.settimeout(30.0)
        received = rest
        # Read (never write: no pong) until the server ends the connection.
        while True:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError(
                    f"/heartbeat: silent client still connected after {time.monotonic() - start:.2f}s"
                )
            if not chunk:
                break
            received += chunk
        elapsed = time.monotonic() - start
    finally:
        sock.close()
    # The server pinged before giving up: the first frame is a ping (0x89).
    assert received[:1] == b"\x89", f"expected a ping frame first, got {received[:16]!r}"
    assert elapsed >= 0.5, f"dropped after {elapsed:.3f}s, before ping_interval + pong_timeout (0.5s)"
    entry = server.wait_for_close(lambda e: e["path"] == "/heartbeat", skip=skip, timeout=10.0)
    assert entry["code"] == 1006, entry


def test_heartbeat_keeps_answering_client(server):
    async def main():
        # websockets answers pings by itself; its own pings are off so only
        # the server's heartbeat is exercised.
        async with connect(server.ws + "/heartbeat", ping_interval=None) as ws:
            await asyncio.sleep(1.6)
            assert ws.state is State.OPEN
            await ws.send("alive")
            assert await recv(ws) == "alive"

    run(main())


def test_server_close_code_and_reason(server):
    skip = len(server.closes())

    async def main():
        async with connect(server.ws + "/close-me") as ws:
            await ws.send("4001 bye")
            rcvd = await expect_close(ws)
            assert rcvd is not None, "connection dropped without a close frame"
            assert (rcvd.code, rcvd.reason) == (4001, "bye")

    run(main())
    # websockets echoes the server's close frame: on_close sees 4001 too.
    entry = server.wait_for_close(lambda e: e["path"] == "/close-me", skip=skip)
    assert (entry["code"], entry["reason"]) == (4001, "bye"), entry


def test_client_close_1000_is_recorded(server):
    room = f"/rooms/close-{uuid.uuid4().hex[:8]}"

    async def main():
        async with connect(server.ws + room + "?user=zed") as ws:
            assert json.loads(await recv(ws))["room"] == room.rsplit("/", 1)[1]
            await ws.close(1000, "done here")
            assert ws.close_code == 1000  # the server answered our close frame
            rcvd = ws.protocol.close_rcvd
            assert rcvd is not None and rcvd.code == 1000, rcvd

    run(main())
    entry = server.wait_for_close(lambda e: e["path"] == room)
    assert (entry["code"], entry["reason"]) == (1000, "done here"), entry


def test_client_close_1000_on_echo(server):
    skip = len(server.closes())

    async def main():
        ws = await connect(server.ws + "/echo")
        await ws.send("x")
        assert await recv(ws) == "x"
        await ws.close(1000)
        try:
            await ws.recv()
        except ConnectionClosedOK:
            pass

    run(main())
    entry = server.wait_for_close(lambda e: e["path"] == "/echo", skip=skip)
    assert entry["code"] == 1000, entry
