#!/usr/bin/env python3
"""Records real WebSocket traffic for the fuzz seed corpora.

Starts the echo and chat examples, puts a recording TCP proxy in front of
each, and drives them with real clients: Python `websockets`, Node `ws`
and headless Chromium (the chat page). Each proxied connection is saved as
seedgen/traffic/<client>.c2s and .s2c (client-to-server and
server-to-client bytes); `cargo run --example seedgen` turns them into
seeds. Run it once after a protocol change; the traffic files are small
and committed, so seeding does not need any of these clients.

    python3 fuzz/seedgen/capture.py [ECHO_BINARY] [CHAT_BINARY]

(defaults: target/debug/echo and target/debug/chat; build them with
`cargo build -p blaze-examples --bins`). Needs `pip install websockets`,
and for the Node and Chromium captures tests-external/node/node_modules
(`npm ci` there) and /usr/bin/chromium.
"""
import asyncio
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(HERE, "traffic")
NODE_DIR = os.path.join(ROOT, "tests-external", "node")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


class Recorder:
    """A TCP proxy saving each connection's bytes under the current label."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.label = None
        self.count = 0

    async def handle(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        c2s, s2c = bytearray(), bytearray()

        async def pipe(src, dst, log):
            try:
                while data := await src.read(65536):
                    log.extend(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                try:
                    dst.close()
                except Exception:
                    pass

        await asyncio.gather(pipe(reader, up_writer, c2s), pipe(up_reader, writer, s2c))
        if not c2s.startswith(b"GET ") or b"websocket" not in c2s.lower()[:2048]:
            return  # the chat page itself, not a WebSocket
        self.count += 1
        name = self.label if self.count == 1 else f"{self.label}-{self.count}"
        for ext, data in (("c2s", c2s), ("s2c", s2c)):
            with open(os.path.join(OUT, f"{name}.{ext}"), "wb") as f:
                f.write(data)
        print(f"recorded {name}: {len(c2s)} bytes up, {len(s2c)} down")

    def start_label(self, label):
        self.label, self.count = label, 0


async def python_client(port):
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/echo", subprotocols=None, compression=None) as ws:
        await ws.send("Hello, Blaze!")
        await ws.recv()
        await ws.send("κόσμε ✓ 𝄞")
        await ws.recv()
        await ws.send(bytes(range(256)))
        await ws.recv()
        await ws.send("x" * 300)
        await ws.recv()
        pong = await ws.ping(b"are you there")
        await pong
        await ws.close(1000, "bye")
    # The default client offers permessage-deflate; Blaze declines it.
    async with websockets.connect(f"ws://127.0.0.1:{port}/deflate-offer?room=1") as ws:
        await ws.send("offered deflate")
        await ws.recv()


NODE_SCRIPT = r"""
import WebSocket from 'ws';
const port = process.argv[2];
const ws = new WebSocket(`ws://127.0.0.1:${port}/node?token=a%20b`, { perMessageDeflate: false, headers: { Origin: 'http://127.0.0.1' } });
const replies = [];
ws.on('message', (data, isBinary) => {
  replies.push(data);
  if (replies.length === 1) ws.send(Buffer.from([0, 1, 2, 253, 254, 255]));
  else if (replies.length === 2) { ws.ping('node ping'); ws.send('y'.repeat(70000)); }
  else if (replies.length === 3) ws.close(4000, 'node done');
});
ws.on('open', () => ws.send('hello from node ws'));
ws.on('close', () => process.exit(0));
ws.on('error', (e) => { console.error(e); process.exit(1); });
setTimeout(() => process.exit(2), 10000);
"""

CHROMIUM_SCRIPT = r"""
import { chromium } from 'playwright-core';
const port = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, timeout: 30000,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
});
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'connected', null, { timeout: 10000 });
  await page.fill('#name', 'alice');
  for (const text of ['hello from Chromium ✓', '<b>not bold</b>', 'z'.repeat(200)]) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
    await page.waitForTimeout(200);
  }
  await page.evaluate(() => ws.close(1000, 'tab closed'));
  await page.waitForTimeout(300);
} finally {
  await browser.close();
}
"""


def run_node(script, port, label):
    path = os.path.join(NODE_DIR, f".capture-{label}.mjs")
    with open(path, "w") as f:
        f.write(script)
    try:
        subprocess.run(["node", path, str(port)], cwd=NODE_DIR, check=True, timeout=60)
    finally:
        os.remove(path)


async def main():
    echo_bin = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "echo")
    chat_bin = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target", "debug", "chat")
    os.makedirs(OUT, exist_ok=True)
    echo_port, chat_port = free_port(), free_port()
    procs = [
        subprocess.Popen([echo_bin, "--addr", f"127.0.0.1:{echo_port}"], stdout=subprocess.DEVNULL),
        subprocess.Popen([chat_bin, "--addr", f"127.0.0.1:{chat_port}"], stdout=subprocess.DEVNULL),
    ]
    try:
        wait_port(echo_port)
        wait_port(chat_port)
        echo, chat = Recorder(echo_port), Recorder(chat_port)
        echo_proxy = await asyncio.start_server(echo.handle, "127.0.0.1", 0)
        chat_proxy = await asyncio.start_server(chat.handle, "127.0.0.1", 0)
        eport = echo_proxy.sockets[0].getsockname()[1]
        cport = chat_proxy.sockets[0].getsockname()[1]

        echo.start_label("python-websockets")
        await python_client(eport)
        await asyncio.sleep(0.3)

        echo.start_label("node-ws")
        await asyncio.to_thread(run_node, NODE_SCRIPT, eport, "node")
        await asyncio.sleep(0.3)

        chat.start_label("chromium-chat")
        await asyncio.to_thread(run_node, CHROMIUM_SCRIPT, cport, "chromium")
        await asyncio.sleep(0.5)
        echo_proxy.close()
        chat_proxy.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    asyncio.run(main())
