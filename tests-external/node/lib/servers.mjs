// Starts the Blaze binaries under test as child processes on 127.0.0.1 and
// always kills them: on stop(), and on this process's exit.
//
// Binaries come from `cargo build -p blaze-tokio --example conformance_server
// -p blaze-examples --bins` (scripts/test-external.sh does it). CARGO_TARGET_DIR
// moves the target directory.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HOST = '127.0.0.1';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR ?? 'target');
const START_TIMEOUT_MS = 15_000;

const live = new Set();
const killAll = () => {
  for (const child of live) child.kill('SIGKILL');
};
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}

export function binary(kind, name) {
  const file = kind === 'example' ? path.join(TARGET, 'debug', 'examples', name) : path.join(TARGET, 'debug', name);
  if (!existsSync(file)) {
    throw new Error(`${file} not found: run scripts/test-external.sh (or cargo build) first`);
  }
  return file;
}

/** A port that was free a moment ago (bind to 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once a TCP connection to HOST:port succeeds. */
export async function waitForPort(port, timeoutMs = START_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const sock = net.connect({ host: HOST, port }, () => {
        sock.destroy();
        resolve(true);
      });
      sock.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${HOST}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Spawns `file args` and waits for a stdout line matching `ready`.
 * Returns { child, match, stop(), exited } .
 */
function launch(file, args, ready) {
  // The conformance server's /panic panics on purpose: no backtrace noise.
  const env = { ...process.env, RUST_BACKTRACE: '0' };
  const child = spawn(file, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
  live.add(child);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    let timer;
    await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
  };
  const started = new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`${path.basename(file)} printed no ready line in ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      const match = buffered.match(ready);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${path.basename(file)} exited early (code ${code}, signal ${signal})`));
    });
  });
  return started.then(
    (match) => ({ child, match, stop, exited }),
    async (err) => {
      await stop();
      throw err;
    },
  );
}

/** The conformance server on an ephemeral port. */
export async function startConformance() {
  const server = await launch(binary('example', 'conformance_server'), ['--addr', `${HOST}:0`], /listening on ws:\/\/[^\s]*:(\d+)/);
  const port = Number(server.match[1]);
  return { ...server, port, ws: `ws://${HOST}:${port}`, http: `http://${HOST}:${port}` };
}

/**
 * A workspace binary (chat, echo) that takes `--addr HOST:PORT` and cannot
 * bind port 0: pick a free port, and retry with another if it was taken.
 * `args` are passed on (`--tls-cert FILE --tls-key FILE`: use `wss`/`https`).
 */
export async function startBin(name, ready, args = []) {
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    let server;
    try {
      server = await launch(binary('bin', name), ['--addr', `${HOST}:${port}`, ...args], ready);
      // chat prints its line before binding: wait until it accepts.
      await Promise.race([
        waitForPort(port),
        server.exited.then(({ code }) => {
          throw new Error(`${name} exited (code ${code}) before listening`);
        }),
      ]);
      return {
        ...server,
        port,
        ws: `ws://${HOST}:${port}`,
        http: `http://${HOST}:${port}`,
        wss: `wss://localhost:${port}`,
        https: `https://localhost:${port}`,
      };
    } catch (err) {
      lastError = err;
      if (server) await server.stop();
    }
  }
  throw lastError;
}

/**
 * Debian's redis-server on a free port, in a temp dir, without persistence
 * (for the cluster tests). Returns { url, port, stop() }.
 */
export async function startRedis() {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const file = '/usr/bin/redis-server';
  if (!existsSync(file)) throw new Error(`${file} missing: run scripts/install-test-deps.sh`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'blaze-redis-'));
  const port = await freePort();
  const args = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir];
  const child = spawn(file, args, { stdio: 'ignore' });
  live.add(child);
  const exited = new Promise((resolve) => child.on('exit', () => resolve(live.delete(child))));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `redis://${HOST}:${port}`, port, stop };
}
