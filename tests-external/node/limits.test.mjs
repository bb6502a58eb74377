// Guards (401/403), message size (1009), connections per address (429)
// and rate limits, met by Node's `ws` client on the conformance server's
// `/guarded`, `/small`, `/per-ip`, `/rate` and `/rate-close` routes.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';

import { startConformance } from './lib/servers.mjs';
import { open, refused } from './lib/wsclient.mjs';

const T = { timeout: 20_000 };
const TOKEN = 'let-me-in';
const BURST = 5;
const RATE_ERROR = { type: 'error', error: 'rate limit exceeded' };

/** Collects text messages until the server closes; bounded. */
async function untilClosed(c, ms = 5000) {
  const before = [];
  const deadline = Date.now() + ms;
  for (;;) {
    let message;
    try {
      message = await c.next(Math.max(10, deadline - Date.now()));
    } catch (err) {
      if (c.ws.readyState === c.ws.CLOSED || c.ws.readyState === c.ws.CLOSING) break;
      throw err;
    }
    before.push(message.data);
  }
  return { before, closed: await c.waitClosed(Math.max(10, deadline - Date.now())) };
}

/** Opens `url`, retrying while the server still counts an earlier connection (429). */
async function openWhenAdmitted(url, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await open(url);
    } catch (err) {
      if (!/unexpected response 429/.test(err.message) || Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

describe('guards and limits with ws', () => {
  let server;
  before(async () => {
    server = await startConformance();
  });
  after(async () => {
    await server?.stop();
  });

  test('guard: no token → 401, a wrong one → 403, before any handshake', T, async () => {
    let res = await refused(server.ws + '/guarded');
    assert.deepEqual([res.status, res.body], [401, 'missing token']);
    res = await refused(server.ws + '/guarded?token=nope');
    assert.deepEqual([res.status, res.body], [403, 'bad token']);
    res = await refused(server.ws + '/guarded', { headers: { Authorization: 'Bearer nope' } });
    assert.deepEqual([res.status, res.body], [403, 'bad token']);
  });

  test('guard: a valid token (query or bearer header) opens; the handler sees the user', T, async () => {
    const byQuery = await open(server.ws + `/guarded?token=${TOKEN}&user=ann`);
    const byHeader = await open(server.ws + '/guarded?user=bob', { ws: { headers: { Authorization: `Bearer ${TOKEN}` } } });
    try {
      assert.equal(await byQuery.nextText(), 'hello ann');
      assert.equal(await byHeader.nextText(), 'hello bob');
      await byHeader.send('echo me');
      assert.equal(await byHeader.nextText(), 'echo me');
    } finally {
      assert.equal((await byQuery.close()).code, 1000);
      assert.equal((await byHeader.close()).code, 1000);
    }
  });

  test('/small: exactly 1 KiB echoes; 1 KiB + 1 closes with 1009; others go on', T, async () => {
    const bystander = await open(server.ws + '/small');
    const c = await open(server.ws + '/small');
    try {
      await c.send('s'.repeat(1024));
      assert.equal(await c.nextText(), 's'.repeat(1024));
      await c.send(Buffer.alloc(1025, 7));
      const { before: got, closed } = await untilClosed(c);
      assert.deepEqual(got, []);
      assert.equal(closed.code, 1009);
      await bystander.send('still here');
      assert.equal(await bystander.nextText(), 'still here');
    } finally {
      await bystander.close();
    }
  });

  test('/small: a fragmented message over 1 KiB closes with 1009', T, async () => {
    const c = await open(server.ws + '/small');
    // Three 400-byte fragments: each under the limit, the message over it.
    await new Promise((resolve, reject) => c.ws.send('a'.repeat(400), { fin: false }, (e) => (e ? reject(e) : resolve())));
    await new Promise((resolve, reject) => c.ws.send('b'.repeat(400), { fin: false }, (e) => (e ? reject(e) : resolve())));
    c.ws.send('c'.repeat(400), { fin: true }, () => {});
    const { before: got, closed } = await untilClosed(c);
    assert.deepEqual(got, []);
    assert.equal(closed.code, 1009);
  });

  test('/per-ip: a second connection from the address → 429 until the first leaves', T, async () => {
    const first = await openWhenAdmitted(server.ws + '/per-ip');
    try {
      const res = await refused(server.ws + '/per-ip');
      assert.deepEqual([res.status, res.body], [429, 'too many connections from this address']);
      await first.send('first still works');
      assert.equal(await first.nextText(), 'first still works');
    } finally {
      await first.close();
    }
    const second = await openWhenAdmitted(server.ws + '/per-ip');
    await second.send('second');
    assert.equal(await second.nextText(), 'second');
    await second.close();
  });

  test('/rate: the burst passes, the excess gets error messages, the connection stays', T, async () => {
    const c = await open(server.ws + '/rate');
    try {
      const started = Date.now();
      await Promise.all(Array.from({ length: 12 }, (_, i) => c.send(`m${i}`)));
      const replies = [];
      for (let i = 0; i < 12; i++) replies.push(await c.nextText());
      const spanS = (Date.now() - started) / 1000;
      const echoed = replies.filter((r) => r.startsWith('m'));
      const errors = replies.filter((r) => !r.startsWith('m')).map((r) => JSON.parse(r));
      // The burst, plus what refilled (2/s) while the messages arrived.
      assert.ok(echoed.length >= BURST && echoed.length <= BURST + Math.floor(spanS * 2) + 1, JSON.stringify(replies));
      assert.deepEqual(echoed.slice(0, BURST), ['m0', 'm1', 'm2', 'm3', 'm4']);
      assert.deepEqual(errors, Array(12 - echoed.length).fill(RATE_ERROR));
      await sleep(700); // at least one token back
      await c.send('later');
      assert.equal(await c.nextText(), 'later');
    } finally {
      assert.equal((await c.close()).code, 1000);
    }
  });

  test('/rate-close: the first message over the limit closes with 1008', T, async () => {
    const c = await open(server.ws + '/rate-close');
    await Promise.all(Array.from({ length: 12 }, (_, i) => c.send(`m${i}`)));
    const { before: got, closed } = await untilClosed(c);
    assert.equal(closed.code, 1008);
    assert.ok(got.length >= BURST && got.length < 12, JSON.stringify(got));
    assert.deepEqual(got, got.map((_, i) => `m${i}`));
  });
});
