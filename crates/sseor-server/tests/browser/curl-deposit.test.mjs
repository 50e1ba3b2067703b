// A deposit published from outside the page, with curl, shows in the page within a second.

import assert from 'node:assert/strict';
import {
  connectAs, curlPublish, logEntries, positionIn, scenario, waitForConnections, watchLog,
} from './harness.mjs';

scenario('a deposit published with curl appears within one second', async (s) => {
  const server = await s.startServer();
  const page = await s.openPage(server.url);
  await connectAs(page, 'alice');
  await waitForConnections(server, 'alice', 1);

  const arrival = await watchLog(page, { type: 'transaction.updated', text: '42.5' });
  const started = Date.now();
  const { status, json } = await curlPublish(server, {
    user_id: 'alice',
    event: { type: 'transaction.updated', data: { transaction_id: 'txn_curl_1', status: 'completed', amount: 42.5 } },
  });
  const returned = Date.now();
  assert.equal(status, 202, JSON.stringify(json));
  assert.equal(json.delivered_locally, 1, JSON.stringify(json));

  const shown = await arrival();
  const afterReturn = shown - returned;
  s.note(`latency: curl ran ${returned - started} ms; the deposit showed in the page ${shown - started} ms after curl `
    + `started, ${afterReturn >= 0 ? `${afterReturn} ms after` : `${-afterReturn} ms before`} it returned`);
  assert.ok(
    afterReturn <= 1000,
    `the deposit showed ${afterReturn} ms after curl returned: more than the one second allowed`,
  );

  const entry = logEntries(page, { type: 'transaction.updated', text: '42.5' });
  assert.equal(await entry.count(), 1);
  assert.equal(
    positionIn(await entry.getAttribute('data-id'), 'user:alice'),
    json.id,
    'data-id is a cursor at the position the publish answered',
  );
  assert.match(await entry.locator('pre').textContent(), /"transaction_id": "txn_curl_1"/);
});
