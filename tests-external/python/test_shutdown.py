"""Graceful shutdown: every client gets 1001 and the process exits 0."""

import asyncio
import queue
import subprocess
import time
import urllib.request

from websockets.exceptions import ConnectionClosed

from wshelp import connect, recv, run


def test_shutdown_closes_clients_with_1001(fresh_server):
    srv = fresh_server

    async def main():
        clients = [await connect(srv.ws + "/echo") for _ in range(5)]
        try:
            for i, ws in enumerate(clients):
                await ws.send(f"c{i}")
                assert await recv(ws) == f"c{i}"
            posted = time.monotonic()
            request = urllib.request.Request(srv.http + "/shutdown", method="POST", data=b"")
            status = await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=5).status)
            assert status == 202

            async def close_code(ws):
                try:
                    msg = await asyncio.wait_for(ws.recv(), 5)
                except ConnectionClosed as closed:
                    return closed.rcvd.code if closed.rcvd else None
                return f"message {msg!r}"

            codes = await asyncio.gather(*(close_code(ws) for ws in clients))
            assert codes == [1001] * 5
            return posted
        finally:
            for ws in clients:
                await ws.close()

    posted = run(main(), timeout=20)
    try:
        code = srv.proc.wait(timeout=max(0.1, posted + 5 - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AssertionError("server still running 5 s after POST /shutdown")
    assert code == 0, f"server exited with {code}"
    # It said so on its way out.
    lines = []
    deadline = time.monotonic() + 2
    while "server stopped" not in lines and time.monotonic() < deadline:
        try:
            lines.append(srv.stdout_lines.get(timeout=0.1))
        except queue.Empty:
            pass
    assert "server stopped" in lines, lines
