// Render, then stream: a page that an application rendered with the stream's cursor
// receives what was published between its rendering and its load, and nothing from before.

import assert from 'node:assert/strict';
import { HANG_GUARD_MS, publish, scenario } from './harness.mjs';

/** `GET /api/v1/cursor?query`, as the application that renders the page asks it. */
async function cursorOf(server, query) {
  const response = await fetch(`${server.url}/api/v1/cursor?${query}`, { signal: AbortSignal.timeout(HANG_GUARD_MS) });
  const json = await response.json();
  assert.equal(response.status, 200, `GET /api/v1/cursor: ${JSON.stringify(json)}`);
  return json.cursor;
}

/** The page the application renders: the orders it read, and the cursor embedded beside
 * them. Its script lists the `n` of every `order` event it receives in `window.received`. */
function renderedPage(orders, cursor) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Orders</title><link rel="icon" href="data:,"></head>
<body>
<ul id="orders">${orders.map((n) => `<li>order ${n}</li>`).join('')}</ul>
<script src="/sseor.js"></script>
<script>
  window.received = [];
  const stream = Sseor.connect({ user: 'olga', topics: ['orders'], cursor: ${JSON.stringify(cursor)} });
  stream.on('order', (event) => window.received.push(JSON.parse(event.data).n));
</script>
</body></html>`;
}

async function publishOrder(server, target, n) {
  const { status, json } = await publish(server, { ...target, event: { type: 'order', data: { n } } });
  assert.equal(status, 202, JSON.stringify(json));
}

/** Waits until the page has received `count` orders; returns them. */
async function received(page, count) {
  await page.waitForFunction((want) => (window.received || []).length >= want, count, { timeout: HANG_GUARD_MS });
  return page.evaluate(() => window.received);
}

scenario('a page rendered with a cursor receives what was published before it loaded', async (s) => {
  const server = await s.startServer();
  await publishOrder(server, { user_id: 'olga' }, 1);
  // The application renders the page: order 1 from its database, and the cursor.
  const html = renderedPage([1], await cursorOf(server, 'user_id=olga&topic=orders'));
  // Published while the page is on its way to the browser: no stream is open yet.
  await publishOrder(server, { user_id: 'olga' }, 2);
  await publishOrder(server, { topic: 'orders' }, 3);

  const page = await s.openPage('about:blank');
  await page.route(`${server.url}/orders`, (route) => route.fulfill({ contentType: 'text/html', body: html }));
  await page.goto(`${server.url}/orders`);
  assert.deepEqual(await received(page, 2), [2, 3], 'the orders published since the rendering, not order 1 again');

  await publishOrder(server, {}, 4);
  assert.deepEqual(await received(page, 3), [2, 3, 4], 'then live');
});
