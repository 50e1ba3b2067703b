// The page's own deposit button publishes an event that comes back to the page.

import assert from 'node:assert/strict';
import { connectAs, logEntries, positionIn, scenario, waitForLogEntry } from './harness.mjs';

scenario("the deposit button's event appears in the page's log", async (s) => {
  const server = await s.startServer();
  const page = await s.openPage(server.url);
  await connectAs(page, 'alice');

  await page.fill('#amount', '123.45');
  await page.click('#deposit-form [type="submit"]');

  const entry = await waitForLogEntry(page, { type: 'transaction.updated', text: '123.45' });
  const id = await entry.getAttribute('data-id');
  assert.match(positionIn(id, 'user:alice') ?? '', /^[0-9a-f]{8}-1$/, `the event has an id at alice's first event: ${id}`);
  assert.equal(await logEntries(page, { type: 'transaction.updated' }).count(), 1);
});
