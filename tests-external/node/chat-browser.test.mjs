// The chat example in headless Chromium (Debian's, driven by
// playwright-core): two tabs of one browser context talk to each other.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { startBin } from './lib/servers.mjs';
import { open } from './lib/wsclient.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = process.env.BLAZE_CHAT_SCREENSHOT ?? '/tmp/blaze-chat.png';
const WAIT = { timeout: 10_000 };

let server;
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: run scripts/install-test-deps.sh`);
  server = await startBin('chat', /chat on http:\/\//);
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
    ],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

/** Lines of a page's #log, as shown. */
const logLines = (page) => page.locator('#log p').allInnerTexts();

/** Waits until #status reads exactly `text`. */
const waitStatus = (page, text) =>
  page.waitForFunction((want) => document.getElementById('status')?.textContent === want, text, WAIT);

/** Waits until a line of #log reads exactly `text`; returns its class. */
async function waitLine(page, text) {
  const line = page.locator('#log p', { hasText: text }).filter({ hasText: new RegExp(`^${escape(text)}$`) });
  await line.first().waitFor({ state: 'visible', ...WAIT });
  return line.first().getAttribute('class');
}

/** The chat example's GET /stats. */
async function stats(srv) {
  const res = await fetch(`${srv.http}/stats`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return res.json();
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('two tabs chat through the server', { timeout: 60_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
  try {
    const problems = [];
    const tabA = await context.newPage();
    const tabB = await context.newPage();
    for (const [name, page] of [['A', tabA], ['B', tabB]]) {
      page.on('pageerror', (err) => problems.push(`tab ${name} page error: ${err.message}`));
      page.on('console', (msg) => {
        // The example serves no favicon; the browser's 404 for it is expected.
        if (msg.type() === 'error' && !msg.location().url?.endsWith('/favicon.ico')) {
          problems.push(`tab ${name} console error: ${msg.text()} (${msg.location().url})`);
        }
      });
    }

    // Watch tab A's WebSocket handshake through the DevTools protocol: the
    // 101's Sec-WebSocket-Extensions says whether deflate was negotiated.
    const cdp = await context.newCDPSession(tabA);
    await cdp.send('Network.enable');
    const handshakes = [];
    cdp.on('Network.webSocketHandshakeResponseReceived', (event) => handshakes.push(event.response));

    const response = await tabA.goto(`${server.http}/`, WAIT);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-type'], /^text\/html/);
    await tabB.goto(`${server.http}/`, WAIT);
    assert.equal(await tabB.title(), 'Blaze chat');
    await waitStatus(tabA, 'connected');
    await waitStatus(tabB, 'connected');

    // Tab A speaks first: both tabs see the join notice, then the message.
    await tabA.fill('#name', 'alice');
    await tabA.fill('#text', 'hello from tab A ✓');
    await tabA.click('#send');
    assert.equal(await waitLine(tabB, 'alice joined (2 online)'), 'notice');
    assert.equal(await waitLine(tabB, 'alice: hello from tab A ✓'), null);
    await waitLine(tabA, 'alice: hello from tab A ✓');
    assert.equal(await tabA.inputValue('#text'), '', 'the form clears the text field after sending');

    // And back.
    await tabB.fill('#name', 'bob');
    await tabB.fill('#text', 'hi alice');
    await tabB.press('#text', 'Enter');
    await waitLine(tabA, 'bob joined (2 online)');
    await waitLine(tabA, 'bob: hi alice');
    await waitLine(tabB, 'bob: hi alice');

    // Text is shown as text, never as markup.
    await tabA.fill('#text', '<b>not bold</b>');
    await tabA.click('#send');
    await waitLine(tabB, 'alice: <b>not bold</b>');
    assert.equal(await tabB.locator('#log b').count(), 0);

    assert.deepEqual(await logLines(tabB), [
      'alice joined (2 online)',
      'alice: hello from tab A ✓',
      'bob joined (2 online)',
      'bob: hi alice',
      'alice: <b>not bold</b>',
    ]);

    // Compression is really on with Chromium: its offer was accepted...
    assert.equal(handshakes.length, 1, 'tab A made one WebSocket handshake');
    assert.equal(handshakes[0].status, 101);
    const extensions = Object.entries(handshakes[0].headers).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions');
    assert.ok(extensions, `no Sec-WebSocket-Extensions in the 101: ${JSON.stringify(handshakes[0].headers)}`);
    assert.match(extensions[1], /^permessage-deflate/);
    // ...and a broadcast longer than the 64-byte threshold is compressed
    // (once, shared mode) and arrives intact.
    const before = await stats(server);
    const long = 'a longer message, well past the compression threshold — ünïcödé ✓ 日本語 '.repeat(3).trim();
    await tabA.fill('#text', long);
    await tabA.click('#send');
    await waitLine(tabB, `alice: ${long}`);
    await waitLine(tabA, `alice: ${long}`);
    const after = await stats(server);
    assert.ok(after.compressions > 0, `compressions: ${JSON.stringify(after)}`);
    assert.ok(after.compressions > before.compressions, `the long broadcast was not compressed: ${JSON.stringify([before, after])}`);

    await tabB.screenshot({ path: SCREENSHOT, fullPage: true });

    // Closing tab A: tab B is told alice left.
    await tabA.close();
    await waitLine(tabB, 'alice left (1 online)');
    assert.deepEqual(problems, []);
  } finally {
    await context.close().catch(() => {});
  }
});

test('malformed chat input gets an error message, connection stays', { timeout: 20_000 }, async () => {
  // A server of its own: the browser test's tabs may still be counted online
  // on the shared one for a moment after their context closed.
  const own = await startBin('chat', /chat on http:\/\//);
  const c = await open(own.ws + '/chat').catch(async (err) => {
    await own.stop();
    throw err;
  });
  try {
    await c.send('{"name":');
    const error = JSON.parse(await c.nextText());
    assert.equal(error.type, 'error');
    assert.equal(typeof error.error, 'string');
    await c.send(JSON.stringify({ name: 'carol', text: 'still open' }));
    assert.deepEqual(JSON.parse(await c.nextText()), { type: 'join', name: 'carol', online: 1 });
    assert.deepEqual(JSON.parse(await c.nextText()), { type: 'message', name: 'carol', text: 'still open' });
  } finally {
    await c.close().catch(() => {});
    await own.stop();
  }
});
