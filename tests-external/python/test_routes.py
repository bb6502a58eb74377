"""Route parameters, query strings and JSON handling."""

import json

import pytest

from wshelp import connect, recv, run


def test_room_param_and_query(server):
    async def main():
        async with connect(server.ws + "/rooms/42?user=ann") as ws:
            first = json.loads(await recv(ws))
            assert first == {"room": "42", "user": "ann"}

    run(main())


def test_room_query_percent_decoded(server):
    async def main():
        async with connect(server.ws + "/rooms/lobby?user=b%C3%A9a%20x") as ws:
            first = json.loads(await recv(ws))
            assert first == {"room": "lobby", "user": "béa x"}

    run(main())


@pytest.mark.parametrize("path", ["/json", "/json-stream"])
def test_json_sum(server, path):
    async def main():
        async with connect(server.ws + path) as ws:
            await ws.send(json.dumps({"a": 1, "b": 2}))
            assert json.loads(await recv(ws)) == {"sum": 3}
            await ws.send(json.dumps({"a": -10, "b": 4}))
            assert json.loads(await recv(ws)) == {"sum": -6}

    run(main())


@pytest.mark.parametrize("path", ["/json", "/json-stream"])
def test_json_malformed_keeps_connection(server, path):
    async def main():
        async with connect(server.ws + path) as ws:
            await ws.send('{"a":')
            error = json.loads(await recv(ws))
            assert error.get("type") == "error", error
            assert isinstance(error.get("error"), str) and error["error"], error
            # Still open: a valid message afterwards is answered.
            await ws.send('{"a":1,"b":2}')
            assert json.loads(await recv(ws)) == {"sum": 3}
            # Valid JSON of the wrong shape is an error too, and still not fatal.
            await ws.send('{"x":1}')
            error = json.loads(await recv(ws))
            assert error.get("type") == "error", error
            await ws.send('{"a":20,"b":22}')
            assert json.loads(await recv(ws)) == {"sum": 42}

    run(main())
