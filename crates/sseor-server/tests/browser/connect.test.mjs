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

scenario('sseor.js passes on a transient event after a numbered one', async (s) => {
  const server = await s.startServer();
  const page = await s.openPage(server.url);
  // A transient event carries no id of its own: EventSource gives it the id of the event
  // before it, which the client must not take for a repeat of that event.
  const received = page.evaluate(async () => {
    const { connect } = await import('/sseor.mjs');
    const stream = connect({ user: 'nora', share: false });
    const note = new Promise((resolve) => stream.on('note', resolve));
    const typing = new Promise((resolve) => stream.on('typing', resolve));
    const [first, second] = [await note, await typing];
    stream.close();
    return { note: first.lastEventId, typing: second.lastEventId, data: JSON.parse(second.data) };
  });
  await waitForConnections(server, 'nora', 1);
  const numbered = await publish(server, { user_id: 'nora', event: { type: 'note', data: {} } });
  assert.equal(numbered.status, 202, JSON.stringify(numbered.json));
  const transient = await publish(server, { user_id: 'nora', event: { type: 'typing', data: { by: 'bob' }, transient: true } });
  assert.equal(transient.status, 202, JSON.stringify(transient.json));
  assert.equal(transient.json.id, undefined, 'a transient event has no position');
  const { note, typing, data } = await received;
  assert.equal(positionIn(note, 'user:nora'), numbered.json.id);
  assert.deepEqual({ typing, data }, { typing: '', data: { by: 'bob' } });
});
