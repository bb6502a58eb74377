// wss and https: Node's `ws` (OpenSSL, through node:tls) against the echo
// example serving TLS on both runtimes, and headless Chromium on the chat
// example over https/wss. A throwaway CA is made by
// tests-external/gen-test-cert.sh; the examples must be built with
// `--features tls` (scripts/test-external.sh does it).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { HOST, startBin } from './lib/servers.mjs';
import { open } from './lib/wsclient.mjs';

const T = { timeout: 30_000 };
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const certDir = mkdtempSync(path.join(os.tmpdir(), 'blaze-tls-'));
execFileSync('bash', [path.join(ROOT, 'tests-external', 'gen-test-cert.sh'), certDir], { stdio: 'inherit' });
const ca = readFileSync(path.join(certDir, 'ca.pem'));
const tlsArgs = ['--tls-cert', path.join(certDir, 'cert.pem'), '--tls-key', path.join(certDir, 'key.pem')];
after(() => rmSync(certDir, { recursive: true, force: true }));

for (const runtime of ['tokio', 'async-std']) {
  describe(`echo example over wss (${runtime}) with ws`, () => {
    let server;
    before(async () => {
      server = await startBin('echo', /echo server on wss:\/\//, [...tlsArgs, '--runtime', runtime]);
    });
    after(async () => {
      await server?.stop();
    });

    test('echo text and binary, by name and by IP', T, async () => {
      for (const base of [server.wss, `wss://${HOST}:${server.port}`]) {
        const c = await open(`${base}/echo`, { ws: { ca } });
        try {
          await c.send('hello over tls ✓');
          assert.deepEqual(await c.next(), { data: 'hello over tls ✓', isBinary: false });
          const bytes = randomBytes(1 << 20); // many TLS records, more than a socket buffer
          await c.send(bytes);
          const back = await c.next(10_000);
          assert.equal(back.isBinary, true);
          assert.ok(bytes.equals(back.data), 'binary payload differs');
        } finally {
          assert.equal((await c.close(1000)).code, 1000);
        }
      }
    });

    test('broadcast reaches 3 wss clients, sender included', T, async () => {
      const clients = [];
      try {
        for (let i = 0; i < 3; i++) clients.push(await open(`${server.wss}/broadcast`, { ws: { ca } }));
        await new Promise((r) => setTimeout(r, 200)); // all registered
        await clients[0].send('to all');
        for (const c of clients) assert.equal(await c.nextText(), 'to all');
      } finally {
        for (const c of clients) await c.close().catch(() => {});
      }
    });

    test('a client not trusting the CA refuses the server', T, async () => {
      await assert.rejects(open(`${server.wss}/echo`), (err) => {
        assert.match(String(err.code ?? err.message), /UNABLE_TO_VERIFY|SELF_SIGNED|CERT/);
        return true;
      });
    });

    test('stalled TLS handshakes hold nobody up', T, async () => {
      const stalled = [];
      let closedEarly = 0;
      for (let i = 0; i < 5; i++) {
        stalled.push(await new Promise((resolve, reject) => {
          const s = net.connect({ host: HOST, port: server.port }, () => resolve(s));
          s.on('error', reject);
          s.on('close', () => (closedEarly += 1));
          s.resume(); // see the server's FIN if it comes
        }));
      }
      try {
        const started = Date.now();
        const c = await open(`${server.wss}/echo`, { ws: { ca } });
        await c.send('not held up');
        assert.equal(await c.nextText(), 'not held up');
        await c.close();
        // The example's handshake timeout is 10 s.
        assert.ok(Date.now() - started < 8000, `served after ${Date.now() - started} ms`);
        assert.equal(closedEarly, 0, 'a stalled handshake was closed early');
      } finally {
        for (const s of stalled) {
          s.removeAllListeners('close');
          s.destroy();
        }
      }
    });
  });
}

describe('chat example over https/wss in Chromium', () => {
  let server;
  let browser;
  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: run scripts/install-test-deps.sh`);
    server = await startBin('chat', /chat on https:\/\//, tlsArgs);
    // A browser of its own: only this test profile ignores certificate
    // errors (the test CA is not in its trust store).
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--ignore-certificate-errors',
      ],
    });
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  test('two tabs chat over wss', { timeout: 60_000 }, async () => {
    const context = await browser.newContext();
    try {
      const problems = [];
      const tabA = await context.newPage();
      const tabB = await context.newPage();
      const sockets = [];
      for (const [name, page] of [['A', tabA], ['B', tabB]]) {
        page.on('pageerror', (err) => problems.push(`tab ${name} page error: ${err.message}`));
        page.on('console', (msg) => {
          if (msg.type() === 'error' && !msg.location().url?.endsWith('/favicon.ico')) {
            problems.push(`tab ${name} console error: ${msg.text()}`);
          }
        });
        page.on('websocket', (ws) => sockets.push(ws.url()));
      }
      const response = await tabA.goto(`${server.https}/`, { timeout: 10_000 });
      assert.equal(response.status(), 200);
      assert.equal(new URL(response.url()).protocol, 'https:');
      await tabB.goto(`${server.https}/`, { timeout: 10_000 });
      const connected = (page) =>
        page.waitForFunction(() => document.getElementById('status')?.textContent === 'connected', null, { timeout: 10_000 });
      await connected(tabA);
      await connected(tabB);
      assert.deepEqual(sockets, [`${server.wss}/chat`, `${server.wss}/chat`]);

      await tabA.fill('#name', 'alice');
      await tabA.fill('#text', 'hello over wss');
      await tabA.click('#send');
      await tabB.locator('#log p', { hasText: 'alice: hello over wss' }).first().waitFor({ timeout: 10_000 });
      await tabA.locator('#log p', { hasText: 'alice: hello over wss' }).first().waitFor({ timeout: 10_000 });
      assert.deepEqual(problems, []);
    } finally {
      await context.close().catch(() => {});
    }
  });
});
