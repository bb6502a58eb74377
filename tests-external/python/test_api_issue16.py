"""Issue 16's API against Python `websockets` (a client not written by us).

Routes (see blaze-tokio/examples/conformance_server.rs, `issue16_routes`):
`/frames` (stream style, `recv_frame`: replies naming each frame),
`/rate-close-stream` (stream style under a closing rate limit, 2 msg/s,
burst 5, awaiting before each echo), `/admit` (an async guard: token `t1`,
subprotocol `v2` when offered).
"""

import asyncio

from websockets.exceptions import ConnectionClosed, InvalidStatus

from wshelp import connect, recv, run

BURST = 5


def test_recv_frame_sees_pings_and_pongs_and_pings_are_answered(server):
    async def main():
        async with connect(server.ws + "/frames") as ws:
            await ws.send("hello")
            assert await recv(ws) == "text hello"
            await ws.send(b"\x01\x02\x03")
            assert await recv(ws) == "binary 3"
            # websockets' ping waits for the matching pong: the automatic one.
            waiter = await ws.ping(b"x")
            await asyncio.wait_for(waiter, 5)
            assert await recv(ws) == "ping x"
            await ws.pong(b"y")
            assert await recv(ws) == "pong y"

    run(main())


def test_a_stream_handler_answers_what_it_accepted_before_the_rate_limit_closes(server):
    async def main():
        async with connect(server.ws + "/rate-close-stream") as ws:
            for i in range(12):
                await ws.send(f"m{i}")
            received = []
            try:
                while True:
                    received.append(await recv(ws))
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1008, closed
            # Every accepted message got its reply, in order, before the close
            # (a refill during the burst may let one more through).
            assert BURST <= len(received) <= BURST + 1, received
            assert received == [f"m{i}" for i in range(len(received))], received

    run(main())


def test_an_async_guard_accepts_with_a_subprotocol_from_the_offer_or_rejects(server):
    async def main():
        async with connect(server.ws + "/admit?token=t1", subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"
            assert await recv(ws) == "hi alice"
        try:
            async with connect(server.ws + "/admit?token=bad"):
                raise AssertionError("accepted")
        except InvalidStatus as refused:
            assert refused.response.status_code == 401
            assert refused.response.body == b"no"

    run(main())
