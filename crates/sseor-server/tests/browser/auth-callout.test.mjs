// With the application's own login (SSEOR_AUTH_URL), a page of the same origin opens its
// stream with nothing but the application's session cookie: no token in the page. sseor
// asks the application, a small HTTP server of this test, which knows one session.

import assert from 'node:assert/strict';
import http from 'node:http';
import { HANG_GUARD_MS, answeredBy, scenario, sleep } from './harness.mjs';

const PUBLISHER = 'a-publish-token-for-the-login-tests';

/** The application's login check: `session=s-dana` is dana's; anything else is refused. */
async function startLoginApp() {
  const app = { calls: 0, cookies: [] };
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      app.calls += 1;
      const cookie = request.headers.cookie ?? '';
      app.cookies.push(cookie);
      JSON.parse(body); // sseor sends {"user_id", "topics"}
      const signedIn = cookie.split(';').some((pair) => pair.trim() === 'session=s-dana');
      const [status, answer] = signedIn
        ? [200, { user: 'dana', topics: ['news'], expires_in: 600 }]
        : [401, { error: 'please sign in' }];
      response.writeHead(status, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  app.url = `http://127.0.0.1:${server.address().port}/sseor-auth`;
  app.stop = () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); });
  return app;
}

/** Starts sseor asking `app`, and the login app, stopped when the scenario ends. */
async function startWithLogin(s) {
  const app = await startLoginApp();
  s.t.after(() => app.stop());
  const server = await s.startServer({ env: { SSEOR_AUTH_URL: app.url, SSEOR_PUBLISH_TOKEN: PUBLISHER } });
  return { app, server };
}

/** Polls the connection counts (with the publish token) until `user` has `count` streams. */
async function waitForStreams(server, user, count) {
  const deadline = Date.now() + HANG_GUARD_MS;
  for (;;) {
    const response = await fetch(`${server.url}/api/v1/connections?user_id=${user}`, {
      headers: { Authorization: `Bearer ${PUBLISHER}` },
    });
    const counts = await response.json();
    if (counts.user === count) return;
    if (Date.now() > deadline) throw new Error(`${user} never had ${count} streams: ${JSON.stringify(counts)}`);
    await sleep(50);
  }
}

scenario('a page with the session cookie alone opens its stream and receives an event', async (s) => {
  const { app, server } = await startWithLogin(s);
  const page = await s.openPage(server.url);
  await page.context().addCookies([
    { name: 'session', value: 's-dana', url: server.url, httpOnly: true, sameSite: 'Lax' },
  ]);
  // No user, no token: the application's answer says whose stream it is.
  const received = page.evaluate(async () => {
    const { connect } = await import('/sseor.mjs');
    const stream = connect({ topics: ['news'], share: false, resume: false });
    const event = await new Promise((resolve) => stream.on('headline', resolve));
    stream.close();
    return JSON.parse(event.data);
  });
  await waitForStreams(server, 'dana', 1);
  const published = await fetch(`${server.url}/api/v1/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${PUBLISHER}` },
    body: JSON.stringify({ topic: 'news', event: { type: 'headline', data: { text: 'cookies work' } } }),
  });
  assert.equal(published.status, 202, await published.text());
  assert.deepEqual(await received, { text: 'cookies work' });
  assert.ok(app.calls >= 1, 'the application was asked');
  assert.ok(app.cookies.some((cookie) => cookie.includes('session=s-dana')), JSON.stringify(app.cookies));
  assert.ok(!server.output().includes('s-dana'), 'the session cookie appears in the server output');
});

scenario('a page without the session cookie is refused with the application\'s reason', async (s) => {
  const { server } = await startWithLogin(s);
  const page = await s.openPage(server.url, { allowedConsoleErrors: [answeredBy(server, 401, '/api/v1/sse')] });
  const outcome = await page.evaluate(async () => {
    const { connect } = await import('/sseor.mjs');
    const stream = connect({ topics: ['news'], share: false, resume: false });
    return new Promise((resolve) => stream.onState((state) => {
      if (state.state === 'closed') resolve(state.error);
    }));
  });
  assert.deepEqual(
    { status: outcome.status, reason: outcome.reason, message: outcome.message },
    { status: 401, reason: 'rejected', message: 'please sign in' },
  );
});
