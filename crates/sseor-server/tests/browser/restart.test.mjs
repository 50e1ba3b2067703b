// The server stops and starts again under the open page: the page shows reconnecting, comes
// back by itself and shows every event published meanwhile (resumed from Redis history).

import assert from 'node:assert/strict';
import {
  answeredBy, connectAs, connectionRefusedBy, deposits, logEntries, scenario, waitForConnections, waitForLogPositions, waitForState,
} from './harness.mjs';

scenario('the page reconnects after a server restart and shows what it missed', async (s) => {
  const redis = await s.startRedis();
  const a = await s.startServer({ env: { REDIS_URL: redis.url } });
  const b = await s.startServer({ env: { REDIS_URL: redis.url } });
  const page = await s.openPage(a.url, {
    // While it stops: refused connections, and 503 from a stream opened during its drain.
    allowedConsoleErrors: [connectionRefusedBy(a), answeredBy(a, 503, '/api/v1/sse')],
  });
  await connectAs(page, 'alice');
  await waitForConnections(a, 'alice', 1);
  const before = await deposits(a, 'alice', 2, 'before');
  await waitForLogPositions(page, 'transaction.updated', 'user:alice', before);

  const exit = await a.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, a.output());
  await waitForState(page, 'reconnecting');
  await page.waitForFunction(() => /retrying in \d+\.\d s/.test(document.getElementById('retry').textContent));

  // Published on the other instance while this one is down: kept in Redis' history.
  const missed = await deposits(b, 'alice', 4, 'missed');
  await a.restart();
  await waitForState(page, 'open');
  const after = await deposits(a, 'alice', 1, 'after');

  await waitForLogPositions(page, 'transaction.updated', 'user:alice', [...before, ...missed, ...after]);
  assert.equal(await logEntries(page, { type: 'sseor.reset' }).count(), 0, 'the resume needed no reset');
  await waitForConnections(a, 'alice', 1);
});
