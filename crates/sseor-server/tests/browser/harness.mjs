// Shared steps of the browser tests: real redis-server and sseor processes on free ports,
// real HTTP, and Debian's Chromium driven by playwright-core.
//
// A scenario is written as
//
//     scenario('the page connects and shows open', async (s) => {
//       const server = await s.startServer();
//       const page = await s.openPage(server.url);
//       await connectAs(page, 'alice');
//     });
//
// and everything it starts through `s` is stopped when it ends, passed or failed: each
// page's screenshot is saved first, then the console errors of every page are checked,
// then the browser is closed and the processes are stopped.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/** The Chromium the tests drive: Debian's package `chromium`. */
export const CHROMIUM = '/usr/bin/chromium';

/** Chromium's flags. Without the background-networking ones, Chromium keeps trying to reach
 * outside hosts, which a closed network refuses. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** How long a wait may last before the scenario is declared hung: a guard, not a measure. */
export const HANG_GUARD_MS = 20_000;

/** How long one scenario may take in all before node:test stops it. */
export const SCENARIO_TIMEOUT_MS = 120_000;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WORKSPACE = path.resolve(HERE, '..', '..', '..', '..');

/** Where screenshots go: `$CARGO_TARGET_DIR/browser-screenshots`, else the workspace's
 * `target/browser-screenshots`. */
export const SCREENSHOT_DIR = path.join(
  process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(WORKSPACE, 'target'),
  'browser-screenshots',
);

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

/** Every child process still running; killed if this process exits before stopping them. */
const running = new Set();

process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => process.exit(1)); // runs the 'exit' handler above
}

/** Waits `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A child process whose output is kept, line by line, with `label` in front. */
class Proc {
  constructor(label, command, args, env) {
    this.label = label;
    this.lines = [];
    this.child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(this.child);
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => {
        running.delete(this.child);
        resolve({ code: null, signal: null, error });
      });
      this.child.on('exit', (code, signal) => {
        running.delete(this.child);
        resolve({ code, signal });
      });
    });
    this.exit = null;
    this.exited.then((exit) => {
      this.exit = exit;
    });
    for (const [name, stream] of [['out', this.child.stdout], ['err', this.child.stderr]]) {
      let rest = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        const parts = (rest + chunk).split('\n');
        rest = parts.pop();
        for (const line of parts) this.lines.push(`[${label} ${name}] ${line}`);
      });
      stream.on('end', () => {
        if (rest) this.lines.push(`[${label} ${name}] ${rest}`);
      });
    }
  }

  /** Whether the process has exited. */
  get done() {
    return this.exit !== null;
  }

  /** Sends `signal` and waits for the exit; SIGKILL if it has not exited within the guard. */
  async terminate(signal) {
    if (!this.done) this.child.kill(signal);
    let timer;
    const exit = await Promise.race([
      this.exited,
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), HANG_GUARD_MS);
      }),
    ]);
    clearTimeout(timer);
    if (exit) return exit;
    this.child.kill('SIGKILL');
    await this.exited;
    throw new Error(`${this.label} did not exit within ${HANG_GUARD_MS} ms of ${signal}; killed\n${this.output()}`);
  }

  output() {
    return this.lines.join('\n');
  }
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const listener = net.createServer();
    listener.unref();
    listener.on('error', reject);
    listener.listen(0, '127.0.0.1', () => {
      const { port } = listener.address();
      listener.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns a truthy value; throws `message()` past the hang guard. */
async function until(check, message, intervalMs = 50) {
  const deadline = Date.now() + HANG_GUARD_MS;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(message());
    await sleep(intervalMs);
  }
}

function missingTool(error, tool, install) {
  if (error && error.code === 'ENOENT') {
    return new Error(`${tool} is not installed: ${install}`);
  }
  return null;
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

/** Answers `PING` with the first line of the reply, or null when nothing listens. */
function redisPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(2000);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk;
      if (reply.includes('\r\n')) {
        socket.destroy();
        resolve(reply.split('\r\n')[0]);
      }
    });
    socket.on('timeout', () => {
      socket.destroy();
      resolve(null);
    });
    socket.on('error', () => resolve(null));
  });
}

/** Starts a redis-server of its own on a free port, keeping nothing on disk. */
export async function startRedis() {
  const port = await freePort();
  const proc = new Proc(`redis :${port}`, 'redis-server', [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
  ], process.env);
  await until(
    async () => {
      if (proc.done) {
        const exit = await proc.exited;
        throw missingTool(exit.error, 'redis-server', 'apt-get install redis-server')
          ?? new Error(`redis-server exited (${JSON.stringify(exit)}) before answering PING\n${proc.output()}`);
      }
      return (await redisPing(port)) === '+PONG';
    },
    () => `redis-server on port ${port} did not answer PING\n${proc.output()}`,
  );
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    output: () => proc.output(),
    stop: () => proc.terminate('SIGTERM'),
  };
}

// ---------------------------------------------------------------------------------------
// sseor
// ---------------------------------------------------------------------------------------

/** Whether the server reads `name`: such variables are not passed on from the test's own
 * environment, so that it cannot change what the tests see. */
function readByServer(name) {
  return /^(SSEOR_|SERVER_|LOG_)/.test(name) || name === 'REDIS_URL' || name === 'RUST_LOG';
}

function sseorBinary() {
  const bin = process.env.SSEOR_BIN;
  if (!bin) {
    throw new Error(
      'SSEOR_BIN is not set: run the browser tests with `cargo test -p sseor-server --test browser`, '
        + 'or set SSEOR_BIN to a built sseor binary (cargo build -p sseor-server)',
    );
  }
  if (!existsSync(bin)) throw new Error(`SSEOR_BIN=${bin} does not exist`);
  return bin;
}

/** The status `url` answers with, or null when nothing answers; over HTTPS, `ca` is the
 * certificate to trust. */
async function statusOf(url, ca) {
  if (url.startsWith('https:')) {
    return new Promise((resolve) => {
      const request = https.get(url, { ca, timeout: 2000 }, (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode));
      });
      request.on('timeout', () => request.destroy());
      request.on('error', () => resolve(null));
    });
  }
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return null;
  }
}

/** A self-signed certificate for 127.0.0.1 and localhost, made by openssl in a folder of
 * its own: the paths of the certificate and key files, and the certificate (PEM). */
async function selfSignedCertificate() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sseor-tls-'));
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  const args = [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert,
  ];
  await new Promise((resolve, reject) => {
    execFile('openssl', args, (error, _stdout, stderr) => {
      if (!error) return resolve();
      reject(missingTool(error, 'openssl', 'apt-get install openssl')
        ?? new Error(`openssl ${args.join(' ')} failed: ${error.message}\n${stderr}`));
    });
  });
  return { cert, key, pem: readFileSync(cert) };
}

/**
 * Starts the sseor binary of `$SSEOR_BIN` on 127.0.0.1 and waits until `/healthz` and
 * `/readyz` answer 200. `env` adds to (or overrides) the settings; `port` defaults to a
 * free one; with `tls`, it serves HTTPS with a self-signed certificate (its PEM is the
 * server's `ca`). Shutdown is made quick unless `env` says otherwise.
 */
export async function startServer({ env = {}, port, tls = false } = {}) {
  const bin = sseorBinary();
  port ??= await freePort();
  const certificate = tls ? await selfSignedCertificate() : null;
  if (certificate) env = { SSEOR_TLS_CERT: certificate.cert, SSEOR_TLS_KEY: certificate.key, ...env };
  const childEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !readByServer(name)));
  Object.assign(childEnv, {
    SSEOR_HOST: '127.0.0.1',
    SERVER_PORT: String(port),
    LOG_LEVEL: 'info',
    SSEOR_SHUTDOWN_TIMEOUT: '2s',
    SSEOR_DRAIN_PERIOD: '100ms',
    ...env,
  });
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const runs = []; // one Proc per start; the last one is the running one

  async function start() {
    const proc = new Proc(`sseor :${port}${runs.length ? ` (start ${runs.length + 1})` : ''}`, bin, [], childEnv);
    runs.push(proc);
    for (const probe of ['/healthz', '/readyz']) {
      await until(
        async () => {
          if (proc.done) {
            const exit = await proc.exited;
            throw new Error(`sseor exited (${JSON.stringify(exit)}) before ${probe} answered 200\n${proc.output()}`);
          }
          return (await statusOf(url + probe, certificate?.pem)) === 200;
        },
        () => `sseor on port ${port}: ${probe} did not answer 200\n${proc.output()}`,
      );
    }
  }
  await start();

  const current = () => runs[runs.length - 1];
  const server = {
    url,
    port,
    ca: certificate?.pem,
    /** Everything every start of this server printed. */
    output: () => runs.map((proc) => proc.output()).join('\n'),
    /** SIGTERM, and waits for the exit: `{code, signal}`. */
    stop: () => current().terminate('SIGTERM'),
    /** SIGKILL, and waits for the exit. */
    kill: () => current().terminate('SIGKILL'),
    /** Starts again on the same port (stopping first if it still runs). */
    async restart() {
      if (!current().done) await server.stop();
      await start();
    },
    /** Whether the last start still runs. */
    get running() {
      return !current().done;
    },
  };
  return server;
}

// ---------------------------------------------------------------------------------------
// The HTTP API
// ---------------------------------------------------------------------------------------

/** POSTs `body` to `/api/v1/publish` with fetch: `{status, json}`. */
export async function publish(server, body) {
  const response = await fetch(`${server.url}/api/v1/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(HANG_GUARD_MS),
  });
  return { status: response.status, json: await response.json() };
}

/** POSTs `body` to `/api/v1/publish` with the curl command line, as a service outside the
 * page would: `{status, json}`. */
export function curlPublish(server, body) {
  const args = [
    '-sS', '-X', 'POST',
    '-H', 'Content-Type: application/json',
    '--data', JSON.stringify(body),
    '--max-time', String(HANG_GUARD_MS / 1000),
    '-w', '\n%{http_code}',
    `${server.url}/api/v1/publish`,
  ];
  return new Promise((resolve, reject) => {
    execFile('curl', args, (error, stdout, stderr) => {
      if (error) {
        reject(missingTool(error, 'curl', 'apt-get install curl')
          ?? new Error(`curl ${args.join(' ')} failed: ${error.message}\n${stderr}`));
        return;
      }
      const cut = stdout.lastIndexOf('\n');
      const text = stdout.slice(0, cut);
      try {
        resolve({ status: Number(stdout.slice(cut + 1)), json: JSON.parse(text) });
      } catch {
        reject(new Error(`curl: the answer is not JSON: ${JSON.stringify(stdout)}`));
      }
    });
  });
}

/**
 * The position (`EPOCH-SEQ`, as a publish answers it) that the cursor `id` holds for
 * `target` (`user:ID`, `topic:NAME` or `all`); null when it holds none. A cursor is the
 * `id:` of every event of a stream: `1.` and the unpadded base64url of one entry per target
 * of the stream, each 2 bytes of the target's tag, 4 bytes of its epoch (both big-endian)
 * and its number as an unsigned LEB128 varint.
 */
export function positionIn(id, target) {
  assert.ok(typeof id === 'string' && id.startsWith('1.'), `not a cursor: ${JSON.stringify(id)}`);
  const bytes = Buffer.from(id.slice(2), 'base64url');
  const tag = tagOf(target);
  let at = 0;
  while (at < bytes.length) {
    assert.ok(at + 6 < bytes.length, `a truncated cursor: ${id}`);
    const entryTag = bytes.readUInt16BE(at);
    const epoch = bytes.readUInt32BE(at + 2);
    at += 6;
    let seq = 0n;
    for (let shift = 0n; ; shift += 7n) {
      assert.ok(at < bytes.length, `a truncated cursor: ${id}`);
      const byte = bytes[at++];
      seq |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) break;
    }
    if (entryTag === tag) return `${epoch.toString(16).padStart(8, '0')}-${seq}`;
  }
  return null;
}

/** The tag of `target` in a cursor: the low 16 bits of the FNV-1a hash of its name. */
function tagOf(target) {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(target, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash & 0xffff;
}

/** `GET /api/v1/connections?user_id=`: the server's counts for `user`. */
export async function connections(server, user) {
  const response = await fetch(`${server.url}/api/v1/connections?user_id=${encodeURIComponent(user)}`, {
    signal: AbortSignal.timeout(HANG_GUARD_MS),
  });
  const json = await response.json();
  assert.equal(response.status, 200, `GET /api/v1/connections: ${JSON.stringify(json)}`);
  return json;
}

/** Polls `/api/v1/connections` until the server counts `count` streams of `user`. */
export async function waitForConnections(server, user, count) {
  let last;
  await until(
    async () => {
      last = await connections(server, user);
      return last.user === count;
    },
    () => `the server never counted ${count} stream(s) of ${user}; last answer: ${JSON.stringify(last)}`,
  );
  return last;
}

// ---------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------

/** Launches Debian's Chromium, headless, through playwright-core. */
export async function launchBrowser(extraArgs = []) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Chromium: apt-get install chromium`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (error) {
    throw new Error(`playwright-core is not installed: run \`npm ci\` in ${HERE} (${error.message})`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs] });
}

/** Errors every page may log: none. (The demo page names its icon, so Chromium does not ask
 * for /favicon.ico.) */
export const ALWAYS_ALLOWED_CONSOLE_ERRORS = [];

/** What each page opened by `openPage` recorded. */
const recorders = new WeakMap();

/**
 * Opens `url` in a new page of `context`, recording every console error and uncaught page
 * error. `allowedConsoleErrors` are patterns of the ones the scenario expects; each is
 * matched against `"<text> @ <url of the source>"`.
 */
export async function openPage(context, url, { allowedConsoleErrors = [] } = {}) {
  const page = await context.newPage();
  const errors = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`${message.text()} @ ${message.location().url || '?'}`);
  });
  page.on('pageerror', (error) => errors.push(`uncaught: ${error.stack || error.message} @ ${page.url()}`));
  recorders.set(page, { errors, allowed: [...ALWAYS_ALLOWED_CONSOLE_ERRORS, ...allowedConsoleErrors] });
  page.setDefaultTimeout(HANG_GUARD_MS);
  await page.goto(url);
  return page;
}

/** The console errors of `page` that no allowed pattern matches. */
export function unexpectedConsoleErrors(page) {
  const { errors, allowed } = recorders.get(page);
  return errors.filter((error) => !allowed.some((pattern) => pattern.test(error)));
}

/** The pattern of the errors Chromium logs on its own when `server` refuses connections
 * (while it is stopped): "Failed to load resource: net::ERR_CONNECTION_REFUSED" and the
 * like, for that server's URLs only. */
export function connectionRefusedBy(server) {
  const origin = escapeRegExp(server.url);
  return new RegExp(`net::ERR_CONNECTION_REFUSED.* @ ${origin}/`);
}

/** `text`, matched literally inside a regular expression. */
function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The pattern of the error Chromium logs when `server` answers `status` on `path`. */
export function answeredBy(server, status, path) {
  return new RegExp(`status of ${status} .* @ ${escapeRegExp(server.url + path)}`);
}

// ---------------------------------------------------------------------------------------
// The demo page
// ---------------------------------------------------------------------------------------

/** What the page shows, for failure messages. */
async function describe(page) {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id)?.textContent.trim() ?? '(missing)';
    const log = [...document.querySelectorAll('#log li')]
      .map((li) => `  [${li.dataset.type} ${li.dataset.id}] ${li.textContent.replace(/\s+/g, ' ').trim()}`);
    return `#state: ${text('state')} (data-state=${document.getElementById('state')?.dataset.state}), `
      + `#count-user: ${text('count-user')}, #count-total: ${text('count-total')}\n#log:\n${log.join('\n') || '  (empty)'}`;
  });
}

/** Waits until `#state` shows `state` in its text and its `data-state`. */
export async function waitForState(page, state) {
  try {
    await page.waitForFunction((want) => {
      const badge = document.getElementById('state');
      return badge && badge.textContent.trim() === want && badge.dataset.state === want;
    }, state, { timeout: HANG_GUARD_MS });
  } catch (error) {
    throw new Error(`#state never showed "${state}" (${error.message.split('\n')[0]})\n${await describe(page)}`);
  }
}

/** Fills `#user` (and `#topics`), clicks Connect, and waits for `#state` to say open. */
export async function connectAs(page, user, { topics = [] } = {}) {
  await page.fill('#user', user);
  await page.fill('#topics', topics.join(', '));
  await page.click('#connect-btn');
  await waitForState(page, 'open');
}

/** Waits until `#count-user` shows `count`; the page polls the counts every 2 s. */
export async function waitForUserCount(page, count) {
  try {
    await page.waitForFunction(
      (want) => document.getElementById('count-user')?.textContent.trim() === want,
      String(count),
      { timeout: HANG_GUARD_MS },
    );
  } catch (error) {
    throw new Error(`#count-user never showed ${count} (${error.message.split('\n')[0]})\n${await describe(page)}`);
  }
}

/** The entries of `#log` of `type` whose text contains `text`. */
export function logEntries(page, { type, text }) {
  const entries = page.locator(`#log li[data-type="${type}"]`);
  return text === undefined ? entries : entries.filter({ hasText: text });
}

/** Waits until `#log` holds an entry of `type` containing `text`; returns its locator. */
export async function waitForLogEntry(page, { type, text }) {
  const entry = logEntries(page, { type, text }).first();
  try {
    await entry.waitFor({ timeout: HANG_GUARD_MS });
  } catch (error) {
    throw new Error(
      `no ${type} event containing ${JSON.stringify(text)} appeared in #log within ${HANG_GUARD_MS} ms `
        + `(${error.message.split('\n')[0]})\n${await describe(page)}`,
    );
  }
  return entry;
}

/** The positions in `target`'s sequence (see `positionIn`) of the entries of `#log` of
 * `type`, oldest first: each entry's id is its stream's cursor after the event. */
export async function logPositions(page, type, target) {
  const ids = await page.locator(`#log li[data-type="${type}"]`)
    .evaluateAll((entries) => entries.map((li) => li.dataset.id).reverse());
  return ids.map((id) => positionIn(id, target));
}

/** Waits until `#log` holds exactly the events of `type` at `positions` of `target`'s
 * sequence, oldest first, each once. */
export async function waitForLogPositions(page, type, target, positions) {
  let last = [];
  await until(
    async () => {
      last = await logPositions(page, type, target);
      return last.length >= positions.length;
    },
    () => `#log never held ${positions.length} ${type} events: has ${JSON.stringify(last)}, `
      + `wants ${JSON.stringify(positions)}`,
  );
  assert.deepEqual(last, positions, `the ${type} events in #log, oldest first`);
}

/** Publishes `count` deposits to `user` on `server`, one after another, their transaction
 * ids marked with `label`; returns their positions in the user's sequence. */
export async function deposits(server, user, count, label) {
  const ids = [];
  for (let n = 1; n <= count; n++) {
    const { status, json } = await publish(server, {
      user_id: user,
      event: { type: 'transaction.updated', data: { transaction_id: `txn_${label}_${n}`, status: 'completed', amount: n } },
    });
    assert.equal(status, 202, JSON.stringify(json));
    ids.push(json.id);
  }
  return ids;
}

/**
 * Starts watching `#log` for a new entry of `type` containing `text`. Returns a function
 * that waits (up to the hang guard) for it and returns the time, in `Date.now()`
 * milliseconds, at which the page added it.
 */
export async function watchLog(page, { type, text }) {
  const key = `watch-${Math.random().toString(36).slice(2)}`;
  await page.evaluate(({ key, type, text, timeout }) => {
    const before = new Set(document.querySelectorAll('#log li'));
    const found = () => [...document.querySelectorAll('#log li')]
      .some((li) => !before.has(li) && li.dataset.type === type && li.textContent.includes(text));
    window[key] = new Promise((resolve) => {
      const timer = setTimeout(() => {
        observer.disconnect();
        resolve(null);
      }, timeout);
      const observer = new MutationObserver(() => {
        if (!found()) return;
        observer.disconnect();
        clearTimeout(timer);
        resolve(Date.now());
      });
      observer.observe(document.documentElement, { childList: true, subtree: true, characterData: true });
    });
  }, { key, type, text, timeout: HANG_GUARD_MS });
  return async () => {
    const at = await page.evaluate((key) => window[key], key);
    if (at === null) {
      throw new Error(
        `no ${type} event containing ${JSON.stringify(text)} appeared in #log within ${HANG_GUARD_MS} ms\n${await describe(page)}`,
      );
    }
    return at;
  };
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

function slug(name) {
  return name.toLowerCase().replace(/['’]/g, '').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

/** What one scenario started, to be stopped when it ends. */
class Scenario {
  constructor(t, name, { browserArgs = [] } = {}) {
    this.t = t;
    this.name = name;
    this.browserArgs = browserArgs;
    this.servers = [];
    this.redises = [];
    this.pages = [];
    this.browser = null;
  }

  /** A redis-server of the scenario's own. */
  async startRedis() {
    const redis = await startRedis();
    this.redises.push(redis);
    return redis;
  }

  /** A sseor server of the scenario's own (see `startServer`). */
  async startServer(options) {
    const server = await startServer(options);
    this.servers.push(server);
    return server;
  }

  /** Opens `url` in a page of a new browser context (see `openPage`); with
   * `ignoreHTTPSErrors`, the context accepts a self-signed certificate. */
  async openPage(url, { ignoreHTTPSErrors = false, ...options } = {}) {
    this.browser ??= await launchBrowser(this.browserArgs);
    const context = await this.browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors });
    const page = await openPage(context, url, options);
    this.pages.push(page);
    return page;
  }

  /** Opens `url` in another tab of `page`'s browser context: same origin storage, same
   * BroadcastChannel and Web Locks, as two tabs of one browser window. */
  async openTab(page, url, options) {
    const tab = await openPage(page.context(), url, options);
    this.pages.push(tab);
    return tab;
  }

  /** Prints `message` with the test's result. */
  note(message) {
    this.t.diagnostic(message);
  }

  /** Screenshots, console checks, then stops everything; returns the problems it met. */
  async cleanup() {
    const problems = [];
    const attempt = async (what, step) => {
      try {
        await step();
      } catch (error) {
        problems.push(new Error(`${what}: ${error.message}`, { cause: error }));
      }
    };
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    for (const [index, page] of this.pages.entries()) {
      if (page.isClosed()) continue; // a tab the scenario closed
      const file = path.join(SCREENSHOT_DIR, `${slug(this.name)}${this.pages.length > 1 ? `-${index + 1}` : ''}.png`);
      await attempt(`screenshot ${file}`, async () => {
        await page.screenshot({ path: file, fullPage: true, animations: 'disabled', timeout: HANG_GUARD_MS });
        console.log(`screenshot: ${file}`);
      });
    }
    for (const [index, page] of this.pages.entries()) {
      const unexpected = unexpectedConsoleErrors(page);
      if (unexpected.length) {
        problems.push(new Error(`page ${index + 1} (${page.url()}) logged errors:\n  ${unexpected.join('\n  ')}`));
      }
    }
    if (this.browser) await attempt('closing Chromium', () => this.browser.close());
    for (const server of this.servers) {
      if (!server.running) continue;
      await attempt(`stopping sseor on port ${server.port}`, async () => {
        const exit = await server.stop();
        assert.deepEqual(exit, { code: 0, signal: null }, `sseor did not exit cleanly on SIGTERM\n${server.output()}`);
      });
    }
    for (const redis of this.redises) await attempt(`stopping redis-server on port ${redis.port}`, () => redis.stop());
    return problems;
  }

  /** Everything the processes printed. */
  output() {
    return [...this.redises, ...this.servers].map((proc) => proc.output()).join('\n');
  }
}

/**
 * Declares a scenario: `body(s)` gets a `Scenario` whose `startRedis`, `startServer` and
 * `openPage` start things that are stopped when it ends, even when it fails. A failure
 * prints what the servers logged. `browserArgs` adds to Chromium's flags.
 */
export function scenario(name, body, { browserArgs } = {}) {
  test(name, { timeout: SCENARIO_TIMEOUT_MS }, async (t) => {
    const s = new Scenario(t, name, { browserArgs });
    let failure = null;
    try {
      await body(s);
    } catch (error) {
      failure = error;
    }
    const problems = await s.cleanup();
    if (failure || problems.length) {
      const output = s.output();
      if (output) console.error(`--- ${name}: what the processes printed ---\n${output}\n--- end ---`);
      for (const problem of failure ? problems : problems.slice(1)) console.error(problem);
      throw failure ?? problems[0];
    }
  });
}
