// A user disconnected through POST /api/v1/disconnect: without a reconnection every tab
// stops for good and shows why; allowed to reconnect, the page comes back.

import assert from 'node:assert/strict';
import {
  HANG_GUARD_MS, connectAs, connections, scenario, sleep, waitForConnections, waitForState,
} from './harness.mjs';

/** POSTs `body` to `/api/v1/disconnect`: `{status, json}`. */
async function disconnect(server, body) {
  const response = await fetch(`${server.url}/api/v1/disconnect`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(HANG_GUARD_MS),
  });
  return { status: response.status, json: await response.json() };
}

scenario('a disconnected user stops in every tab and does not come back', async (s) => {
  const server = await s.startServer();
  const holder = await s.openPage(server.url);
  await connectAs(holder, 'vic');
  const other = await s.openTab(holder, server.url);
  await connectAs(other, 'vic');
  await waitForConnections(server, 'vic', 1);

  const { status, json } = await disconnect(server, { user_id: 'vic', reason: 'banned for spam' });
  assert.deepEqual({ status, json }, { status: 200, json: { disconnected: 1 } });
  for (const tab of [holder, other]) {
    await waitForState(tab, 'closed');
    await tab.waitForFunction(() => document.getElementById('connect-status').textContent.includes('banned for spam'));
  }
  await waitForConnections(server, 'vic', 0);
  // Longer than the client's first reconnection delay (1 s, with jitter up to 1.5 s) and
  // than the holder keeps the lock for the other tab: neither opened the stream again.
  await sleep(3000);
  const counts = await connections(server, 'vic');
  assert.equal(counts.user, 0, `no tab came back: ${JSON.stringify(counts)}`);
  for (const tab of [holder, other]) await waitForState(tab, 'closed');
});

scenario('a page allowed to reconnect after a disconnect comes back', async (s) => {
  const server = await s.startServer();
  const page = await s.openPage(server.url);
  await page.evaluate(async () => {
    const { connect, DISCONNECT_EVENT } = await import('/sseor.mjs');
    window.heard = [];
    window.opened = 0;
    window.stream = connect({ user: 'wen', share: false, minDelay: 100, maxDelay: 200 });
    window.stream.on(DISCONNECT_EVENT, (event) => window.heard.push(JSON.parse(event.data)));
    window.stream.onState(({ state }) => { if (state === 'open') window.opened += 1; });
  });
  await page.waitForFunction(() => window.opened === 1);
  await waitForConnections(server, 'wen', 1);

  const { status, json } = await disconnect(server, { user_id: 'wen', reason: 'moved', reconnect: true });
  assert.deepEqual({ status, json }, { status: 200, json: { disconnected: 1 } });
  await page.waitForFunction(() => window.opened === 2);
  assert.deepEqual(await page.evaluate(() => window.heard), [{ reason: 'moved', reconnect: true }]);
  await waitForConnections(server, 'wen', 1);
  assert.equal(await page.evaluate(() => window.stream.state), 'open');
});
