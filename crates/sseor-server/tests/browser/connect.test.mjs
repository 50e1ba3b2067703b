// The demo page opens a stream and says so.

import assert from 'node:assert/strict';
import {
  connectAs, connections, positionIn, publish, scenario, waitForConnections, waitForUserCount,
} from './harness.mjs';

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

scenario('sseor.mjs works as an ES module', async (s) => {
  const server = await s.startServer();
  const page = await s.openPage(server.url);
  // A module of the page's own: it imports the client and waits for one event.
  const received = page.evaluate(async () => {
    const { connect, RESET_EVENT } = await import('/sseor.mjs');
    const stream = connect({ user: 'mona', share: false });
    const event = await new Promise((resolve) => stream.on('notification', resolve));
    stream.close();
    return { data: JSON.parse(event.data), id: event.lastEventId, reset: RESET_EVENT, state: stream.state };
  });
  await waitForConnections(server, 'mona', 1);
  const { status, json } = await publish(server, { user_id: 'mona', event: { type: 'notification', data: { text: 'hi' } } });
  assert.equal(status, 202, JSON.stringify(json));
  const { id, ...rest } = await received;
  assert.equal(positionIn(id, 'user:mona'), json.id, `the event's id is a cursor at its position: ${id}`);
  assert.deepEqual(rest, { data: { text: 'hi' }, reset: 'sseor.reset', state: 'closed' });
  await waitForConnections(server, 'mona', 0);
});
