// Over HTTPS, Chromium multiplexes a page's streams on one HTTP/2 connection, or (with
// HTTP/2 off) opens one HTTP/1.1 connection per stream; either way the server seals and
// opens the TLS records itself after the handshake.

import assert from 'node:assert/strict';
import { HANG_GUARD_MS, scenario } from './harness.mjs';

/** The two ways: over HTTP/2 the page opens more streams than the 6 connections a browser
 * opens to one origin over HTTP/1.1, so they can all be open only over HTTP/2. */
const WAYS = [
  { protocol: 'h2', streams: 10, browserArgs: [] },
  { protocol: 'http/1.1', streams: 3, browserArgs: ['--disable-http2'] },
];

for (const { protocol, streams, browserArgs } of WAYS) {
  scenario(
    `over HTTPS and ${protocol} a page's ${streams} streams each get their events, large ones whole`,
    (s) => streamsOverHttps(s, protocol, streams),
    { browserArgs },
  );
}

async function streamsOverHttps(s, protocol, streams) {
  const server = await s.startServer({ tls: true });
  const page = await s.openPage(server.url, { ignoreHTTPSErrors: true });

  // The streams, and what each receives, kept by the page.
  await page.evaluate((count) => {
    window.publishTimings = () => performance.getEntriesByType('resource')
      .filter((entry) => entry.name.includes('/api/v1/publish'));
    window.received = Array.from({ length: count }, () => []);
    window.sources = Array.from({ length: count }, (_, i) => {
      const source = new EventSource(`/api/v1/sse?user_id=tls-${i}`);
      source.addEventListener('note', (event) => window.received[i].push(JSON.parse(event.data)));
      return source;
    });
  }, streams);
  await waitInPage(page, async (count) => {
    const response = await fetch('/api/v1/connections');
    return (await response.json()).total === count;
  }, streams);

  // One small event to each stream, then one larger than a TLS record (16 KiB) to each.
  const large = 'x'.repeat(40_000);
  const statuses = await page.evaluate(async ({ count, large }) => {
    const publish = (i, data) => fetch('/api/v1/publish', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: `tls-${i}`, event: { type: 'note', data } }),
    }).then((response) => response.status);
    const statuses = [];
    for (let i = 0; i < count; i++) statuses.push(await publish(i, { n: i }));
    for (let i = 0; i < count; i++) statuses.push(await publish(i, { n: i, large }));
    return statuses;
  }, { count: streams, large });
  assert.deepEqual(statuses, Array(2 * streams).fill(202));
  await waitInPage(page, () => window.received.every((events) => events.length === 2));
  const received = await page.evaluate(() => window.received);
  received.forEach((events, i) => {
    assert.deepEqual(events, [{ n: i }, { n: i, large }], `stream ${i}`);
  });

  // The publishes went over the same protocol (the page records the timing of a request
  // once it ends, which a stream does not).
  // The page records a request's timing a moment after it ends.
  await waitInPage(page, (count) => publishTimings().length === count, 2 * streams);
  const protocols = await page.evaluate(() => publishTimings().map((entry) => entry.nextHopProtocol));
  assert.deepEqual(protocols, Array(2 * streams).fill(protocol));

  // Closing them resets each HTTP/2 stream, or closes each connection: the server counts
  // none.
  await page.evaluate(() => window.sources.forEach((source) => source.close()));
  await waitInPage(page, async () => {
    const response = await fetch('/api/v1/connections');
    return (await response.json()).total === 0;
  });
}

/** Polls `check(arg)` in the page until it is true; fails after the hang guard. */
async function waitInPage(page, check, arg) {
  await page.waitForFunction(check, arg, { timeout: HANG_GUARD_MS, polling: 50 });
}
