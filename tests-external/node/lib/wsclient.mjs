// Small promise wrappers around the `ws` client, every wait bounded.

import WebSocket from 'ws';

const DEFAULT_TIMEOUT_MS = 5000;

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A connected client that queues what it receives:
 * `await c.next()` → { data, isBinary }, `await c.closed` → { code, reason }.
 */
export class Client {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    ws.on('message', (data, isBinary) => {
      const message = { data: isBinary ? Buffer.from(data) : data.toString('utf8'), isBinary };
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(message);
      else this.queue.push(message);
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString('utf8') });
        for (const waiter of this.waiters.splice(0)) {
          waiter.reject(new Error(`closed (${code} ${reason}) while waiting for a message`));
        }
      });
    });
    ws.on('error', () => {}); // surfaced through 'close'
  }

  next(ms = DEFAULT_TIMEOUT_MS) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    const pending = new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.CLOSED) {
        reject(new Error('connection is closed'));
        return;
      }
      this.waiters.push({ resolve, reject });
    });
    return withTimeout(pending, ms, 'a message');
  }

  async nextText(ms) {
    const m = await this.next(ms);
    if (m.isBinary) throw new Error(`expected text, got ${m.data.length} binary bytes`);
    return m.data;
  }

  send(data) {
    return new Promise((resolve, reject) => this.ws.send(data, (err) => (err ? reject(err) : resolve())));
  }

  waitClosed(ms = DEFAULT_TIMEOUT_MS) {
    return withTimeout(this.closed, ms, 'the close');
  }

  /** Closes (if still open) and waits for the close handshake. */
  async close(code = 1000, reason = '') {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
    try {
      return await this.waitClosed();
    } catch (err) {
      this.ws.terminate();
      throw err;
    }
  }
}

/** Opens a connection; rejects on error or a non-101 answer. */
export function open(url, options = {}, ms = DEFAULT_TIMEOUT_MS) {
  const ws = new WebSocket(url, options.protocols ?? [], { handshakeTimeout: ms, ...options.ws });
  const client = new Client(ws);
  const opened = new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client));
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate();
      reject(new Error(`unexpected response ${res.statusCode}`));
    });
    ws.once('error', reject);
  });
  return withTimeout(opened, ms, `open ${url}`).catch((err) => {
    ws.terminate();
    throw err;
  });
}

/**
 * Attempts an upgrade that the server should refuse; resolves with
 * { status, headers, body } from the `unexpected-response` event.
 */
export function refused(url, wsOptions = {}, ms = DEFAULT_TIMEOUT_MS) {
  const ws = new WebSocket(url, [], { handshakeTimeout: ms, ...wsOptions });
  const answer = new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode, headers: res.headers, body });
        ws.terminate();
      });
      res.on('error', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error(`${url}: the upgrade was accepted`));
    });
    ws.on('error', (err) => reject(err));
  });
  return withTimeout(answer, ms, `a refusal from ${url}`).finally(() => ws.terminate());
}
