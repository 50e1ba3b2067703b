// EventSource gives up after a 503; the page's client does not: it waits and comes back.

import { answeredBy, connectAs, scenario, waitForConnections, waitForState } from './harness.mjs';

scenario('a page refused for the connection limit connects once there is room', async (s) => {
  const server = await s.startServer({ env: { SSEOR_MAX_CONNECTIONS: '1' } });
  const bob = await s.openPage(server.url);
  await connectAs(bob, 'bob');
  const alice = await s.openPage(server.url, { allowedConsoleErrors: [answeredBy(server, 503, '/api/v1/sse')] });
  await alice.fill('#user', 'alice');
  await alice.click('#connect-btn');
  await waitForState(alice, 'reconnecting');
  await alice.waitForFunction(() => /^503/.test(document.getElementById('connect-status').textContent));

  await bob.click('#connect-btn'); // disconnect
  await waitForState(bob, 'closed');
  await waitForState(alice, 'open');
  await waitForConnections(server, 'alice', 1);
});
