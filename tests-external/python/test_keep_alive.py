"""HTTP/1.1 keep-alive on plain HTTP routes, seen by Python's http.client
(a client that reuses a connection only when the server keeps it)."""

import http.client
import json

from wshelp import HOST


def test_two_requests_over_one_connection(server):
    conn = http.client.HTTPConnection(HOST, server.port, timeout=5)
    try:
        conn.request("GET", "/closes")
        first = conn.getresponse()
        assert first.status == 200
        json.loads(first.read())
        assert not first.will_close, first.getheaders()
        sock = conn.sock
        assert sock is not None
        conn.request("GET", "/closes")
        second = conn.getresponse()
        assert second.status == 200
        json.loads(second.read())
        # http.client opens a new socket only if the server closed the old one.
        assert conn.sock is sock
    finally:
        conn.close()


def test_connection_close_is_honoured(server):
    conn = http.client.HTTPConnection(HOST, server.port, timeout=5)
    try:
        conn.request("GET", "/closes", headers={"Connection": "close"})
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
        assert resp.will_close
        assert resp.getheader("connection") == "close"
    finally:
        conn.close()
