// Makes the README's picture of the demo page: `SSEOR_BIN=... node readme-screenshot.mjs OUT.png`.
// Two tabs of one user share a stream; deposits, a notification and a broadcast arrive
// over a few seconds so that the chart has something to show.

import { launchBrowser, publish, sleep, startServer, waitForConnections } from './harness.mjs';

const out = process.argv[2] ?? 'demo.png';
const server = await startServer();
const browser = await launchBrowser();
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 }, colorScheme: 'light' });
  const page = await context.newPage();
  await page.goto(`${server.url}/?user=user123`);
  const other = await context.newPage();
  await other.goto(`${server.url}/?user=user123`);
  await waitForConnections(server, 'user123', 1);
  const deposit = (amount) => publish(server, {
    user_id: 'user123',
    event: { type: 'transaction.updated', data: { transaction_id: `txn_${1000 + amount}`, status: 'completed', amount } },
  });
  for (const [second, count] of [[0, 2], [1, 5], [2, 3], [3, 8], [4, 4], [5, 6]]) {
    for (let n = 0; n < count; n++) await deposit(100 + second * 10 + n);
    await sleep(1000);
  }
  await publish(server, { event: { type: 'message', data: { text: 'Maintenance tonight at 22:00' } } });
  await publish(server, { user_id: 'user123', event: { type: 'notification', data: { text: 'Your card was charged' } } });
  await sleep(1200);
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
