// Events for one user reach that user's tab only; a broadcast reaches every tab.

import assert from 'node:assert/strict';
import { connectAs, logEntries, publish, scenario, waitForConnections, waitForLogEntry } from './harness.mjs';

scenario("another user's tab does not get alice's event but gets a broadcast", async (s) => {
  const server = await s.startServer();
  const alice = await s.openPage(server.url);
  const bob = await s.openPage(server.url);
  await connectAs(alice, 'alice');
  await connectAs(bob, 'bob');
  await waitForConnections(server, 'alice', 1);
  await waitForConnections(server, 'bob', 1);

  const deposit = await publish(server, {
    user_id: 'alice',
    event: { type: 'transaction.updated', data: { transaction_id: 'txn_alice', status: 'completed', amount: 42.5 } },
  });
  assert.equal(deposit.status, 202, JSON.stringify(deposit.json));
  const broadcast = await publish(server, { event: { type: 'message', data: { text: 'maintenance at noon' } } });
  assert.equal(broadcast.status, 202, JSON.stringify(broadcast.json));

  await waitForLogEntry(alice, { type: 'transaction.updated', text: 'txn_alice' });
  await waitForLogEntry(alice, { type: 'message', text: 'maintenance at noon' });
  // Bob's stream gets events in the order they were published: once the broadcast is
  // there, alice's deposit would have come before it.
  await waitForLogEntry(bob, { type: 'message', text: 'maintenance at noon' });
  assert.equal(await logEntries(bob, { type: 'transaction.updated' }).count(), 0, "bob's tab shows alice's deposit");
  assert.equal(await bob.locator('#log li').count(), 1, 'bob should have the broadcast only');
});
