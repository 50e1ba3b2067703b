// A reload resumes: the page reconnects as the same user and shows the events published
// while it was away, from the last event id it kept.

import assert from 'node:assert/strict';
import { connectAs, deposits, logEntries, scenario, waitForConnections, waitForLogPositions, waitForState } from './harness.mjs';

scenario('a reloaded page shows the events published while it was away', async (s) => {
  const server = await s.startServer();
  const page = await s.openPage(server.url);
  await connectAs(page, 'alice');
  const seen = await deposits(server, 'alice', 2, 'seen');
  await waitForLogPositions(page, 'transaction.updated', 'user:alice', seen);

  await page.goto('about:blank');
  await waitForConnections(server, 'alice', 0);
  const missed = await deposits(server, 'alice', 3, 'missed');
  await page.goto(server.url);
  await waitForState(page, 'open');

  // The log starts empty after a reload: what it shows came from the resume.
  await waitForLogPositions(page, 'transaction.updated', 'user:alice', missed);
  assert.equal(await logEntries(page, { type: 'sseor.reset' }).count(), 0, 'the resume needed no reset');
  assert.equal(await page.inputValue('#user'), 'alice');
});
