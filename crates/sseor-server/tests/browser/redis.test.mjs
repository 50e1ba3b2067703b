// Two sseor instances on one Redis: an event published on one reaches a page on the other.

import assert from 'node:assert/strict';
import { connectAs, positionIn, publish, scenario, waitForConnections, waitForLogEntry } from './harness.mjs';

scenario('an event published on another instance reaches the page through Redis', async (s) => {
  const redis = await s.startRedis();
  const a = await s.startServer({ env: { REDIS_URL: redis.url } });
  const b = await s.startServer({ env: { REDIS_URL: redis.url } });
  const page = await s.openPage(a.url);
  await connectAs(page, 'alice');
  await waitForConnections(a, 'alice', 1);

  const { status, json } = await publish(b, {
    user_id: 'alice',
    event: { type: 'transaction.updated', data: { transaction_id: 'txn_via_b', status: 'completed', amount: 7.25 } },
  });
  assert.equal(status, 202, JSON.stringify(json));
  assert.equal(json.instances, 1, `only instance A holds a stream of alice: ${JSON.stringify(json)}`);

  const entry = await waitForLogEntry(page, { type: 'transaction.updated', text: 'txn_via_b' });
  assert.equal(positionIn(await entry.getAttribute('data-id'), 'user:alice'), json.id);
});
