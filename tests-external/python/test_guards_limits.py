"""Guards (401/403), message size (1009), per-address connection limits
(429) and per-connection rate limits, as a real client meets them.

Routes (see blaze-tokio/examples/conformance_server.rs): `/guarded`
(token `let-me-in`), `/small` (max_message_size 1 KiB), `/per-ip`
(max_connections_per_ip 1), `/rate` and `/rate-close` (2 msg/s, burst 5).
"""

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wshelp import connect, recv, run

TOKEN = "let-me-in"
RATE_ERROR = {"type": "error", "error": "rate limit exceeded"}
BURST = 5
PER_SECOND = 2.0


async def refusal(url: str, **kwargs) -> tuple[int, bytes]:
    """Attempts an upgrade the server must refuse; returns status and body."""
    try:
        async with connect(url, **kwargs):
            pass
    except InvalidStatus as refused:
        return refused.response.status_code, refused.response.body
    raise AssertionError(f"{url}: the upgrade was accepted")


async def expect_close(ws, timeout: float = 5.0):
    """Reads until the server closes `ws`; returns (messages before, close frame)."""
    before = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            before.append(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
    except ConnectionClosed as closed:
        return before, closed.rcvd


# Guards -------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, headers, status, body",
    [
        ("", None, 401, b"missing token"),
        ("?token=", None, 403, b"bad token"),  # an empty token is a token, and a bad one
        ("?token=wrong", None, 403, b"bad token"),
        ("", {"Authorization": "Bearer wrong"}, 403, b"bad token"),
        ("", {"Authorization": "Basic bGV0LW1lLWlu"}, 401, b"missing token"),
    ],
)
def test_guard_rejects_before_the_handshake(server, suffix, headers, status, body):
    async def main():
        kwargs = {"additional_headers": headers} if headers else {}
        assert await refusal(server.ws + "/guarded" + suffix, **kwargs) == (status, body)

    run(main())


@pytest.mark.parametrize(
    "suffix, headers, user",
    [
        (f"?token={TOKEN}", None, "guest"),
        (f"?token={TOKEN}&user=ann", None, "ann"),
        ("?user=bob", {"Authorization": f"Bearer {TOKEN}"}, "bob"),
    ],
)
def test_guard_admits_a_valid_token_and_attaches_the_user(server, suffix, headers, user):
    async def main():
        kwargs = {"additional_headers": headers} if headers else {}
        async with connect(server.ws + "/guarded" + suffix, **kwargs) as ws:
            assert ws.response.status_code == 101
            assert await recv(ws) == f"hello {user}"
            await ws.send("guarded echo")
            assert await recv(ws) == "guarded echo"

    run(main())


def test_guard_rejection_leaves_no_connection_behind(server):
    skip = len(server.closes())

    async def main():
        for _ in range(20):
            assert (await refusal(server.ws + "/guarded"))[0] == 401
        async with connect(server.ws + f"/guarded?token={TOKEN}") as ws:
            assert await recv(ws) == "hello guest"

    run(main())
    # Only the admitted connection ever reached on_close.
    entry = server.wait_for_close(lambda e: e["path"] == "/guarded", skip=skip)
    assert entry["code"] == 1000, entry
    time.sleep(0.1)
    assert [e for e in server.closes()[skip:] if e["path"] == "/guarded"] == [entry]


# Message size: 1009 --------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_small_accepts_a_message_of_exactly_the_limit(server, binary):
    async def main():
        async with connect(server.ws + "/small") as ws:
            message = b"\x07" * 1024 if binary else "s" * 1024
            await ws.send(message)
            assert await recv(ws) == message

    run(main())


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("size", [1025, 64 * 1024])
def test_small_closes_a_larger_message_with_1009(server, binary, size):
    skip = len(server.closes())

    async def main():
        async with connect(server.ws + "/small") as bystander:
            async with connect(server.ws + "/small") as ws:
                await ws.send("fine")
                assert await recv(ws) == "fine"
                await ws.send(b"\x07" * size if binary else "s" * size)
                before, rcvd = await expect_close(ws)
                assert before == [], before
                assert rcvd is not None, "dropped without a close frame"
                assert rcvd.code == 1009, (rcvd.code, rcvd.reason)
            # Another connection on the route never noticed.
            await bystander.send("still here")
            assert await recv(bystander) == "still here"

    run(main())
    entry = server.wait_for_close(lambda e: e["path"] == "/small" and e["code"] != 1000, skip=skip)
    assert entry["code"] == 1009, entry


def test_small_closes_a_fragmented_message_over_the_limit_with_1009(server):
    """Each fragment is under the limit; the message is not."""

    async def main():
        async with connect(server.ws + "/small") as ws:
            # websockets sends an iterable as one fragmented message.
            await ws.send(["f" * 400, "g" * 400])
            assert await recv(ws) == "f" * 400 + "g" * 400
            await ws.send(["f" * 400, "g" * 400, "h" * 400])
            before, rcvd = await expect_close(ws)
            assert before == [], before
            assert rcvd is not None and rcvd.code == 1009, rcvd

    run(main())


# Connections per address: 429 --------------------------------------------


async def open_when_admitted(url: str, timeout: float = 5.0):
    """Connects, retrying while the server still counts an earlier
    connection from this address (its close is processed asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await connect(url)
        except InvalidStatus as refused:
            if refused.response.status_code != 429 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def test_per_ip_second_connection_gets_429_until_the_first_leaves(server):
    async def main():
        first = await open_when_admitted(server.ws + "/per-ip")
        try:
            await first.send("one")
            assert await recv(first) == "one"
            for _ in range(3):
                assert await refusal(server.ws + "/per-ip") == (429, b"too many connections from this address")
            # The first connection is unaffected by the refusals.
            await first.send("still one")
            assert await recv(first) == "still one"
            # Other routes still admit the address.
            async with connect(server.ws + "/echo") as other:
                await other.send("other route")
                assert await recv(other) == "other route"
        finally:
            await first.close()
        second = await open_when_admitted(server.ws + "/per-ip")
        try:
            await second.send("two")
            assert await recv(second) == "two"
        finally:
            await second.close()

    run(main())


# Rate limits ---------------------------------------------------------------


def test_rate_burst_passes_then_excess_gets_error_messages(server):
    async def main():
        async with connect(server.ws + "/rate") as ws:
            started = time.monotonic()
            for i in range(12):
                await ws.send(f"m{i}")
            replies = [await recv(ws) for _ in range(12)]
            span = time.monotonic() - started
            echoed = [r for r in replies if r.startswith("m")]
            errors = [json.loads(r) for r in replies if not r.startswith("m")]
            # The burst passes, plus whatever refilled while the messages
            # were arriving (at most the rate times what this side saw).
            refill = int(span * PER_SECOND) + 1
            assert BURST <= len(echoed) <= BURST + refill, (replies, span)
            # The burst is the first messages; later ones pass only as refilled.
            assert echoed[:BURST] == [f"m{i}" for i in range(BURST)], replies
            assert echoed == sorted(echoed, key=lambda m: int(m[1:])), replies
            assert errors == [RATE_ERROR] * (12 - len(echoed)), replies
            # Still open; once tokens refill, messages pass again.
            await asyncio.sleep(1.0 / PER_SECOND + 0.2)
            await ws.send("later")
            assert await recv(ws) == "later"

    run(main())


def test_rate_close_action_closes_with_1008(server):
    skip = len(server.closes())

    async def main():
        async with connect(server.ws + "/rate-close") as ws:
            for i in range(12):
                await ws.send(f"m{i}")
            before, rcvd = await expect_close(ws)
            assert rcvd is not None, "dropped without a close frame"
            assert rcvd.code == 1008, (rcvd.code, rcvd.reason)
            # What passed before the close is the start of the burst, in order.
            assert BURST <= len(before) < 12, before
            assert before == [f"m{i}" for i in range(len(before))], before

    run(main())
    entry = server.wait_for_close(lambda e: e["path"] == "/rate-close", skip=skip)
    assert entry["code"] == 1008, entry


def test_rate_traffic_under_the_rate_never_trips(server):
    async def main():
        async with connect(server.ws + "/rate-close") as ws:
            # Within the burst, then one message per refill period.
            for i in range(BURST):
                await ws.send(f"b{i}")
                assert await recv(ws) == f"b{i}"
            for i in range(2):
                await asyncio.sleep(1.0 / PER_SECOND + 0.1)
                await ws.send(f"s{i}")
                assert await recv(ws) == f"s{i}"

    run(main())
