// Two chat servers clustered through one Redis (blaze-redis), a Chromium
// tab on each: a message typed on node A shows on node B and back.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { startBin, startRedis } from './lib/servers.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const WAIT = { timeout: 15_000 };

let redis;
let nodeA;
let nodeB;
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: run scripts/install-test-deps.sh`);
  redis = await startRedis();
  nodeA = await startBin('chat', /chat on http:\/\//, ['--redis', redis.url]);
  nodeB = await startBin('chat', /chat on http:\/\//, ['--redis', redis.url]);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await nodeA?.stop();
  await nodeB?.stop();
  await redis?.stop();
});

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Waits until a line of #log reads exactly `text`. */
async function waitLine(page, text, timeout = WAIT.timeout) {
  const line = page.locator('#log p').filter({ hasText: new RegExp(`^${escape(text)}$`) });
  await line.first().waitFor({ state: 'visible', timeout });
}

const waitStatus = (page, text) =>
  page.waitForFunction((want) => document.getElementById('status')?.textContent === want, text, WAIT);

test('a tab on node A and a tab on node B share the room', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  try {
    const problems = [];
    const tabA = await context.newPage();
    const tabB = await context.newPage();
    for (const [name, page] of [['A', tabA], ['B', tabB]]) {
      page.on('pageerror', (err) => problems.push(`tab ${name}: ${err.message}`));
    }
    await tabA.goto(`${nodeA.http}/`, WAIT);
    await tabB.goto(`${nodeB.http}/`, WAIT);
    await waitStatus(tabA, 'connected');
    await waitStatus(tabB, 'connected');
    // Each server has one local client: the message must cross Redis.
    // The subscriptions are made asynchronously; resend until one crosses.
    let crossed = false;
    for (let i = 0; i < 20 && !crossed; i++) {
      await tabA.fill('#name', 'alice');
      await tabA.fill('#text', `hello from node A ${i}`);
      await tabA.click('#send');
      crossed = await waitLine(tabB, `alice: hello from node A ${i}`, 2000).then(
        () => true,
        () => false,
      );
    }
    assert.ok(crossed, 'a message from node A reached the tab on node B');
    await tabB.fill('#name', 'bob');
    await tabB.fill('#text', 'hi alice, from node B');
    await tabB.press('#text', 'Enter');
    await waitLine(tabA, 'bob: hi alice, from node B');
    await waitLine(tabB, 'bob: hi alice, from node B');
    // The join notice counted both servers' clients.
    await waitLine(tabA, 'bob joined (2 online)');
    const stats = await (await fetch(`${nodeA.http}/stats`)).json();
    assert.equal(stats.clustered, true);
    assert.equal(stats.online, 1, 'node A itself has one local client');
    assert.deepEqual(problems, []);
  } finally {
    await context.close().catch(() => {});
  }
});
