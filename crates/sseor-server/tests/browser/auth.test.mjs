// With authentication on, the page connects with a token through a single-use ticket,
// publishes with it, and reconnects with a fresh ticket after a restart.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import {
  answeredBy, connectionRefusedBy, scenario, waitForLogEntry, waitForState,
} from './harness.mjs';

const SECRET = 'a-test-secret-of-more-than-thirty-two-bytes';

/** An HS256 JWT of `claims`, signed with `SECRET`. */
function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${unsigned}.${createHmac('sha256', SECRET).update(unsigned).digest('base64url')}`;
}

scenario('with a token the page connects through a ticket and reconnects with a fresh one', async (s) => {
  const server = await s.startServer({ env: { SSEOR_JWT_SECRET: SECRET } });
  const token = jwt({ sub: 'carol', exp: Math.floor(Date.now() / 1000) + 600, publish: true });
  const page = await s.openPage(server.url, {
    allowedConsoleErrors: [connectionRefusedBy(server), answeredBy(server, 503, '/api/v1/')],
  });
  // The page asks for a token once the server has said it requires one.
  await page.waitForSelector('#token', { state: 'visible' });
  await page.fill('#user', 'carol');
  await page.fill('#token', token);
  await page.click('#connect-btn');
  await waitForState(page, 'open');
  const counts = await fetch(`${server.url}/api/v1/connections?user_id=carol`, {
    headers: { Authorization: `Bearer ${token}` },
  }).then((response) => response.json());
  assert.equal(counts.user, 1, JSON.stringify(counts));

  await page.fill('#amount', '77.5');
  await page.click('#deposit-form button[type=submit]');
  await waitForLogEntry(page, { type: 'transaction.updated', text: '77.5' });

  await server.restart();
  await waitForState(page, 'open');
  const published = await fetch(`${server.url}/api/v1/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ user_id: 'carol', event: { type: 'notification', data: { text: 'after the restart' } } }),
  });
  assert.equal(published.status, 202, await published.text());
  await waitForLogEntry(page, { type: 'notification', text: 'after the restart' });
  assert.ok(!server.output().includes(token), 'the token appears in the server output');
});

scenario('a page without the token the server requires says why it cannot connect', async (s) => {
  const server = await s.startServer({ env: { SSEOR_JWT_SECRET: SECRET } });
  const page = await s.openPage(server.url, { allowedConsoleErrors: [answeredBy(server, 401, '/api/v1/sse')] });
  await page.fill('#user', 'carol');
  await page.click('#connect-btn');
  await waitForState(page, 'closed');
  await page.waitForFunction(() => /401 missing/.test(document.getElementById('connect-status').textContent));
});

scenario('when its token expires the stream ends and the page says so instead of retrying', async (s) => {
  const publisher = 'a-publish-token-for-the-counts';
  const server = await s.startServer({
    env: { SSEOR_JWT_SECRET: SECRET, SSEOR_JWT_LEEWAY: '0s', SSEOR_PUBLISH_TOKEN: publisher },
  });
  const page = await s.openPage(server.url, { allowedConsoleErrors: [answeredBy(server, 401, '/api/v1/tickets')] });
  await page.fill('#user', 'carol');
  await page.fill('#token', jwt({ sub: 'carol', exp: Math.floor(Date.now() / 1000) + 3 }));
  await page.click('#connect-btn');
  await waitForState(page, 'open');

  // The server ends the stream at expiry; the next ticket is refused: nothing to retry.
  await waitForState(page, 'closed');
  await page.waitForFunction(() => /^401 expired/.test(document.getElementById('connect-status').textContent));
  const counts = await fetch(`${server.url}/api/v1/connections?user_id=carol`, {
    headers: { Authorization: `Bearer ${publisher}` },
  }).then((response) => response.json());
  assert.equal(counts.user, 0, JSON.stringify(counts));
});
