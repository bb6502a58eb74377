// The conformance server and the echo example, driven by Node's `ws` client.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { startBin, startConformance } from './lib/servers.mjs';
import { open, refused } from './lib/wsclient.mjs';

const T = { timeout: 20_000 };

describe('conformance server with ws', () => {
  let server;
  before(async () => {
    server = await startConformance();
  });
  after(async () => {
    await server?.stop();
  });

  for (const path of ['/echo', '/echo-trait', '/echo-stream']) {
    test(`echo text and binary on ${path}`, T, async () => {
      const c = await open(server.ws + path);
      try {
        await c.send('hello ✓ 日本 😀');
        assert.deepEqual(await c.next(), { data: 'hello ✓ 日本 😀', isBinary: false });
        const bytes = randomBytes(70_000); // past the 16-bit length
        await c.send(bytes);
        const back = await c.next();
        assert.equal(back.isBinary, true);
        assert.ok(bytes.equals(back.data), 'binary payload differs');
        for (let i = 0; i < 10; i++) await c.send(`n${i}`);
        for (let i = 0; i < 10; i++) assert.equal(await c.nextText(), `n${i}`);
      } finally {
        assert.equal((await c.close(1000)).code, 1000);
      }
    });
  }

  test('broadcast on /broadcast reaches 3 clients, sender included', T, async () => {
    const clients = await Promise.all([0, 1, 2].map(() => open(server.ws + '/broadcast')));
    try {
      await clients[1].send('to everyone');
      for (const c of clients) assert.equal(await c.nextText(), 'to everyone');
      await clients[2].send('again');
      for (const c of clients) assert.equal(await c.nextText(), 'again');
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  test('/close-me closes with the code and reason asked for', T, async () => {
    const c = await open(server.ws + '/close-me');
    await c.send('4001 bye');
    assert.deepEqual(await c.waitClosed(), { code: 4001, reason: 'bye' });
  });

  test('a panicking handler closes its connection with 1011; others go on', T, async () => {
    const bystander = await open(server.ws + '/echo');
    const c = await open(server.ws + '/panic');
    try {
      await c.send('fine');
      assert.equal(await c.nextText(), 'fine');
      await c.send('boom');
      assert.equal((await c.waitClosed()).code, 1011);
      await bystander.send('still here');
      assert.equal(await bystander.nextText(), 'still here');
      const again = await open(server.ws + '/panic');
      await again.send('ok');
      assert.equal(await again.nextText(), 'ok');
      await again.close();
    } finally {
      await bystander.close();
    }
  });

  test('unknown path → 404 (unexpected-response)', T, async () => {
    const res = await refused(server.ws + '/does-not-exist');
    assert.equal(res.status, 404);
  });

  test('unsupported protocol version → 426 with Sec-WebSocket-Version: 13', T, async () => {
    const res = await refused(server.ws + '/echo', { protocolVersion: 8 });
    assert.equal(res.status, 426);
    assert.equal(res.headers['sec-websocket-version'], '13');
  });

  test('forbidden origin → 403, allowed origin opens', T, async () => {
    const res = await refused(server.ws + '/origin', { origin: 'http://evil.example' });
    assert.equal(res.status, 403);
    const c = await open(server.ws + '/origin', { ws: { origin: 'http://allowed.example' } });
    await c.send('hi');
    assert.equal(await c.nextText(), 'hi');
    await c.close();
  });

  test('subprotocol: server preference wins', T, async () => {
    const c = await open(server.ws + '/subprotocol', { protocols: ['chat.v1', 'chat.v2'] });
    assert.equal(c.ws.protocol, 'chat.v2');
    assert.equal(await c.nextText(), 'chat.v2');
    await c.close();
  });
});

describe('echo example with ws', () => {
  let server;
  before(async () => {
    server = await startBin('echo', /echo server on ws:\/\//);
  });
  after(async () => {
    await server?.stop();
  });

  test('echo on any path, opcode kept', T, async () => {
    const c = await open(server.ws + '/any/path?x=1');
    try {
      await c.send('text');
      assert.deepEqual(await c.next(), { data: 'text', isBinary: false });
      const bytes = randomBytes(2048);
      await c.send(bytes);
      const back = await c.next();
      assert.equal(back.isBinary, true);
      assert.ok(bytes.equals(back.data));
    } finally {
      await c.close();
    }
  });

  test('broadcast reaches 3 clients, sender included, text and binary', T, async () => {
    const clients = await Promise.all([0, 1, 2].map(() => open(server.ws + '/broadcast')));
    try {
      await clients[0].send('all of you');
      for (const c of clients) assert.deepEqual(await c.next(), { data: 'all of you', isBinary: false });
      const bytes = randomBytes(100);
      await clients[2].send(bytes);
      for (const c of clients) {
        const m = await c.next();
        assert.equal(m.isBinary, true);
        assert.ok(bytes.equals(m.data));
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});
