// Two tabs of one user share one stream; the tab holding it hands it over when it closes.

import assert from 'node:assert/strict';
import {
  connectAs, connections, curlPublish, deposits, logEntries, positionIn, scenario, waitForConnections,
  waitForLogEntry, waitForLogPositions, waitForState,
} from './harness.mjs';

/** Whether this tab holds the stream (`data-leader` of `#state`). */
async function holdsStream(page) {
  return (await page.getAttribute('#state', 'data-leader')) === 'true';
}

/** Two tabs of `user` in one browser context, connected: the first holds the stream, the
 * second shares it. */
async function twoTabsOf(s, server, user) {
  const holder = await s.openPage(server.url);
  await connectAs(holder, user);
  const other = await s.openTab(holder, server.url);
  await connectAs(other, user);
  assert.ok(await holdsStream(holder), 'the first tab holds the stream');
  assert.ok(!(await holdsStream(other)), 'the second tab shares it');
  return [holder, other];
}

scenario('two tabs of a user receive a deposit over one shared stream, another user does not', async (s) => {
  const server = await s.startServer();
  const [first, second] = await twoTabsOf(s, server, 'alice');
  const bob = await s.openTab(first, server.url);
  await connectAs(bob, 'bob');

  const { status, json } = await curlPublish(server, {
    user_id: 'alice',
    event: { type: 'transaction.updated', data: { transaction_id: 'txn_shared', status: 'completed', amount: 12 } },
  });
  assert.equal(status, 202, JSON.stringify(json));
  assert.equal(json.delivered_locally, 1, `one stream of alice took it: ${JSON.stringify(json)}`);
  for (const tab of [first, second]) {
    const entry = await waitForLogEntry(tab, { type: 'transaction.updated', text: 'txn_shared' });
    assert.equal(positionIn(await entry.getAttribute('data-id'), 'user:alice'), json.id);
  }
  const counts = await connections(server, 'alice');
  assert.equal(counts.user, 1, `two tabs, one stream: ${JSON.stringify(counts)}`);
  assert.equal(counts.total, 2, `alice's shared stream and bob's: ${JSON.stringify(counts)}`);

  // Bob's stream is in order: once a broadcast after the deposit is there, the deposit would be too.
  const broadcast = await curlPublish(server, { event: { type: 'message', data: { text: 'to everyone' } } });
  await waitForLogEntry(bob, { type: 'message', text: 'to everyone' });
  assert.equal(broadcast.json.delivered_locally, 2);
  assert.equal(await logEntries(bob, { type: 'transaction.updated' }).count(), 0, "bob's tab shows alice's deposit");
});

scenario('closing the tab that holds the stream hands it over with nothing lost', async (s) => {
  const server = await s.startServer();
  const [holder, other] = await twoTabsOf(s, server, 'alice');

  const before = await deposits(server, 'alice', 3, 'before');
  await waitForLogPositions(other, 'transaction.updated', 'user:alice', before);

  // Closed while events keep coming: the next tab resumes from the last one it saw.
  await holder.close();
  const during = await deposits(server, 'alice', 5, 'handover');
  await other.waitForFunction(() => document.getElementById('state').dataset.leader === 'true');
  await waitForState(other, 'open');
  const after = await deposits(server, 'alice', 2, 'after');

  await waitForLogPositions(other, 'transaction.updated', 'user:alice', [...before, ...during, ...after]);
  assert.equal(await logEntries(other, { type: 'sseor.reset' }).count(), 0, 'the resume needed no reset');
  await waitForConnections(server, 'alice', 1);
});
