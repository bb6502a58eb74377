// permessage-deflate (RFC 7692) on the conformance server's /deflate*
// routes with Node's `ws` client (its own zlib-based extension).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import WebSocket from 'ws';

import { startConformance } from './lib/servers.mjs';
import { Client } from './lib/wsclient.mjs';

const T = { timeout: 30_000 };
const OPEN_TIMEOUT_MS = 5000;

// route -> [shared mode, route window]
const ROUTES = { '/deflate': [true, 15], '/deflate-dedicated': [false, 15], '/deflate-dedicated-10': [false, 10] };

/**
 * The Sec-WebSocket-Extensions Blaze must answer ws's offer (negotiate.rs):
 * shared mode imposes no context takeover both ways and keeps the offered
 * windows; dedicated mode answers the smaller of offer and route window.
 * `cmwb`: a number, true (the bare parameter) or false (absent).
 */
function expectedAnswer(path, { snct = false, cnct = false, smwb, cmwb = true }) {
  const [shared, window] = ROUTES[path];
  const parts = ['permessage-deflate'];
  if (shared || snct) parts.push('server_no_context_takeover');
  if (shared || cnct) parts.push('client_no_context_takeover');
  if (smwb != null) parts.push(`server_max_window_bits=${Math.min(smwb, window)}`);
  else if (window < 15) parts.push(`server_max_window_bits=${window}`);
  if (cmwb === true) {
    if (window < 15) parts.push(`client_max_window_bits=${window}`);
  } else if (cmwb !== false) parts.push(`client_max_window_bits=${Math.min(cmwb, window)}`);
  return parts.join('; ');
}

/** Opens with `perMessageDeflate` options; resolves { client, extensions header }. */
function openDeflate(url, perMessageDeflate) {
  const ws = new WebSocket(url, [], { handshakeTimeout: OPEN_TIMEOUT_MS, perMessageDeflate, maxPayload: 4 << 20 });
  const client = new Client(ws);
  let header;
  ws.once('upgrade', (res) => (header = res.headers['sec-websocket-extensions']));
  let timer;
  return Promise.race([
    new Promise((resolve, reject) => {
      ws.once('open', () => resolve({ client, header }));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
      ws.once('error', reject);
    }),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`open ${url} timed out`)), OPEN_TIMEOUT_MS))),
  ])
    .finally(() => clearTimeout(timer))
    .catch((err) => {
      ws.terminate();
      throw err;
    });
}

/** Exactly `size` UTF-8 bytes with non-ASCII characters. */
function textOf(size) {
  const pieces = ['héllo ', 'wörld ', '日本語 ', '😀', 'deflate ', '—'];
  let s = '';
  for (let i = 0; ; i++) {
    const p = pieces[i % pieces.length];
    if (Buffer.byteLength(s + p) > size) break;
    s += p;
  }
  return s + 'x'.repeat(size - Buffer.byteLength(s));
}

function binaryOf(size) {
  const b = Buffer.alloc(size);
  const rnd = randomBytes(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(i / 4096) % 2 ? rnd[i] : (i * 7) % 251;
  return b;
}

const SIZES = [0, 1, 100, 10 * 1024, 200 * 1024];
const MESSAGES = [...SIZES.map(textOf), ...SIZES.map(binaryOf)];

async function echoAll(c, messages) {
  // One at a time, twice (a kept context has history the second time), then all in flight.
  for (const m of [...messages, ...messages]) {
    await c.send(m);
    const back = await c.next(10_000);
    if (typeof m === 'string') assert.deepEqual(back, { data: m, isBinary: false }, `${Buffer.byteLength(m)}-byte text`);
    else {
      assert.equal(back.isBinary, true, `${m.length}-byte binary came back as text`);
      assert.ok(m.equals(back.data), `${m.length}-byte binary differs`);
    }
  }
  await Promise.all(messages.map((m) => c.send(m)));
  for (const m of messages) {
    const back = await c.next(10_000);
    assert.equal(back.isBinary, typeof m !== 'string');
    assert.ok(typeof m === 'string' ? back.data === m : m.equals(back.data));
  }
}

// ws options -> the offer parameters for expectedAnswer.
const COMBOS = [
  { name: 'default offer', opts: {}, offer: {} },
  { name: 'windows 9/9', opts: { serverMaxWindowBits: 9, clientMaxWindowBits: 9 }, offer: { smwb: 9, cmwb: 9 } },
  { name: 'windows 15/15', opts: { serverMaxWindowBits: 15, clientMaxWindowBits: 15 }, offer: { smwb: 15, cmwb: 15 } },
  {
    name: 'windows 9/9, no context both ways',
    opts: { serverMaxWindowBits: 9, clientMaxWindowBits: 9, serverNoContextTakeover: true, clientNoContextTakeover: true },
    offer: { smwb: 9, cmwb: 9, snct: true, cnct: true },
  },
  { name: 'server 12, server no context', opts: { serverMaxWindowBits: 12, serverNoContextTakeover: true }, offer: { smwb: 12, snct: true } },
  { name: 'client 11, client no context', opts: { clientMaxWindowBits: 11, clientNoContextTakeover: true }, offer: { cmwb: 11, cnct: true } },
  { name: 'no client_max_window_bits offered', opts: { clientMaxWindowBits: false }, offer: { cmwb: false } },
];

describe('permessage-deflate with ws', () => {
  let server;
  before(async () => {
    server = await startConformance();
  });
  after(async () => {
    await server?.stop();
  });

  const stats = async () => {
    const res = await fetch(`${server.http}/stats`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    return res.json();
  };

  for (const path of ['/deflate', '/deflate-dedicated', '/deflate-dedicated-10']) {
    for (const { name, opts, offer } of COMBOS) {
      test(`${path}, ${name}: negotiated header and echo of every size`, T, async () => {
        const { client, header } = await openDeflate(server.ws + path, { threshold: 0, ...opts });
        try {
          assert.equal(client.ws.extensions, 'permessage-deflate');
          assert.equal(header, expectedAnswer(path, offer));
          // Empty messages included: with a kept context an empty message
          // after another must still be the byte 0x00 (RFC 7692 §7.2.3.6).
          await echoAll(client, MESSAGES);
        } finally {
          await client.close().catch(() => {});
        }
      });
    }
  }

  test('broadcast to 20 deflate + 5 plain clients is compressed once', T, async () => {
    const clients = [];
    try {
      for (let i = 0; i < 25; i++) {
        const deflate = i < 20;
        const { client, header } = await openDeflate(server.ws + '/deflate-broadcast', deflate ? { threshold: 0 } : false);
        if (deflate) assert.equal(header, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
        else assert.equal(header, undefined);
        clients.push(client);
      }
      // 1 KiB of JSON exactly.
      const head = 'ünïcödé ✓ ';
      const fill = 1024 - Buffer.byteLength(JSON.stringify({ type: 'news', body: head }));
      const payload = JSON.stringify({ type: 'news', body: head + 'x'.repeat(fill) });
      assert.equal(Buffer.byteLength(payload), 1024);
      const before = (await stats()).compressions;
      await clients[3].send(payload);
      for (const [i, c] of clients.entries()) {
        assert.deepEqual(await c.next(), { data: payload, isBinary: false }, `client ${i}`);
      }
      // Exactly one each: nothing else arrives.
      await new Promise((r) => setTimeout(r, 300));
      for (const [i, c] of clients.entries()) assert.equal(c.queue.length, 0, `client ${i} got extra messages`);
      assert.equal((await stats()).compressions - before, 1, 'shared mode compresses a broadcast once for everyone');
    } finally {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
    }
  });
});
