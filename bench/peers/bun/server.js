// Bun peer: uWebSockets as Bun embeds it (Bun.serve's websocket server),
// written the way Bun's own bench/websocket-server does it. Follows Blaze's
// echo benchmark contract (examples/src/bin/echo.rs): `--addr HOST:PORT`;
// on any path, echo every message with its opcode; on `/broadcast`, send
// every message to every client connected on `/broadcast`, the sender
// included (`server.publish`, which uWebSockets frames once per publish);
// on `/room/NAME`, the same within that path (a topic per room).
// Compression off, no backpressure limit, so nothing is dropped.
const args = process.argv.slice(2);
const at = args.indexOf("--addr");
const addr = at >= 0 && args[at + 1] ? args[at + 1] : "127.0.0.1:9001";
const colon = addr.lastIndexOf(":");
const hostname = addr.slice(0, colon);
const port = Number(addr.slice(colon + 1));

const server = Bun.serve({
  hostname,
  port,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    const topic = path === "/broadcast" || path.startsWith("/room/") ? path : null;
    if (server.upgrade(req, { data: { topic } })) return;
    return new Response("websocket only", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    // No limit: queue everything, as the other peers' unbounded channels do.
    backpressureLimit: 2 ** 31 - 1, // the largest it takes (bytes)
    closeOnBackpressureLimit: false,
    idleTimeout: 0,
    maxPayloadLength: 16 * 1024 * 1024,
    publishToSelf: true,
    open(ws) {
      if (ws.data.topic) ws.subscribe(ws.data.topic);
    },
    message(ws, message) {
      if (ws.data.topic) server.publish(ws.data.topic, message);
      else ws.send(message);
    },
  },
});
console.log(`bun-peer (Bun ${Bun.version}) on ws://${server.hostname}:${server.port}`);
