// The demo page opens a stream and says so.

import assert from 'node:assert/strict';
import { connectAs, connections, scenario, waitForUserCount } from './harness.mjs';

scenario('the page connects and shows open', async (s) => {
  const server = await s.startServer();
  const page = await s.openPage(server.url);

  await connectAs(page, 'alice');

  const counts = await connections(server, 'alice');
  assert.equal(counts.user, 1, `the server should count alice's stream: ${JSON.stringify(counts)}`);
  assert.equal(counts.total, 1, JSON.stringify(counts));
  await waitForUserCount(page, 1);
  assert.equal(await page.textContent('#connect-btn'), 'Disconnect');
});
