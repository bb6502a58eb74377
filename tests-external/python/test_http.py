"""HTTP answers to requests that do not (or may not) upgrade."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus

from wshelp import HOST, connect, raw_http, recv, run, upgrade_request


async def status_of_refused(url: str, **kwargs) -> int:
    try:
        async with connect(url, **kwargs):
            pass
    except InvalidStatus as refused:
        return refused.response.status_code
    raise AssertionError(f"{url}: the upgrade was accepted")


def test_unknown_path_404(server):
    assert run(status_of_refused(server.ws + "/no/such/route")) == 404
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.http + "/no/such/route", timeout=5)
    assert err.value.code == 404


def test_plain_get_on_ws_route_426(server):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.http + "/echo", timeout=5)
    assert err.value.code == 426
    assert err.value.headers.get("Sec-WebSocket-Version") == "13"


def test_origin_rejected_403(server):
    status = run(status_of_refused(server.ws + "/origin", origin="http://evil.example"))
    assert status == 403


def test_origin_allowed_101(server):
    async def main():
        async with connect(server.ws + "/origin", origin="http://allowed.example") as ws:
            assert ws.response.status_code == 101
            await ws.send("ok")
            assert await recv(ws) == "ok"

    run(main())
    raw = raw_http(server.port, upgrade_request("/origin", server.port, {"Origin": "http://allowed.example"}))
    assert raw.status == 101


def test_limited_route_503_while_full(server):
    async def main():
        async with connect(server.ws + "/limited") as first:
            await first.send("one")
            assert await recv(first) == "one"
            assert await status_of_refused(server.ws + "/limited") == 503
            # The first connection is unaffected.
            await first.send("still")
            assert await recv(first) == "still"
        # Once the first has closed, its slot is free again.
        for _ in range(40):
            try:
                async with connect(server.ws + "/limited") as again:
                    await again.send("two")
                    assert await recv(again) == "two"
                    return
            except InvalidStatus as refused:
                assert refused.response.status_code == 503
                await asyncio.sleep(0.05)
        raise AssertionError("/limited: slot not released within 2 s of the first closing")

    run(main())


def test_subprotocol_server_preference(server):
    async def main():
        async with connect(server.ws + "/subprotocol", subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert await recv(ws) == "chat.v2"
        async with connect(server.ws + "/subprotocol", subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            assert await recv(ws) == "chat.v1"

    run(main())


def test_bad_websocket_version_426(server):
    raw = raw_http(server.port, upgrade_request("/echo", server.port, version="8"))
    assert raw.status == 426, raw
    assert raw.headers.get("sec-websocket-version") == "13", raw


def test_huge_header_431(server):
    request = upgrade_request("/echo", server.port, {"X-Padding": "a" * (20 * 1024)})
    raw = raw_http(server.port, request)
    assert raw.status == 431, raw


def test_stats_counts_live_connections(fresh_server):
    srv = fresh_server

    def total():
        with urllib.request.urlopen(f"http://{HOST}:{srv.port}/stats", timeout=5) as resp:
            return json.loads(resp.read())["total"]

    assert total() == 0

    async def main():
        async with connect(srv.ws + "/echo") as a, connect(srv.ws + "/json") as b:
            await a.send("x")
            assert await recv(a) == "x"
            await b.send('{"a":1,"b":1}')
            assert json.loads(await recv(b)) == {"sum": 2}
            assert await asyncio.to_thread(total) == 2

    run(main())
    for _ in range(40):
        if total() == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"/stats total still {total()} 2 s after both clients closed")
