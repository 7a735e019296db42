// Off loopback the console wants its token: the page takes it from `?token=` once, keeps it
// for the session, drops it from the address bar, and sends it on every request and on
// the event stream.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensureUiBuilt, startServer, startBrowser } from '../lib/harness.js';

let server;
let browser;

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a token-protected console works in the browser and refuses requests without it', async () => {
  ensureUiBuilt();
  server = await startServer({ host: '0.0.0.0' });
  const token = new URL(server.url).searchParams.get('token');
  assert.ok(token, `the console prints an address with its token: ${server.url}`);

  const bare = await fetch(`${server.origin}/api`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ cmd: 'list_packs' }),
  });
  assert.equal(bare.status, 401, 'no token, no answer');

  browser = await startBrowser();
  const page = browser.page;
  page.setDefaultTimeout(20_000);
  await page.goto(server.url);
  await page.locator('[data-testid=packs-table] tr[data-pack="stb-smoke"]').waitFor();
  await page.locator('.conn', { hasText: 'live' }).waitFor();
  assert.ok(!page.url().includes('token='), `the token left the address bar: ${page.url()}`);
  // A reload still has it (sessionStorage / cookie), and the other screens work with it.
  await page.reload();
  await page.locator('[data-testid=packs-table] tr[data-pack="stb-smoke"]').waitFor();
  await page.goto(`${server.origin}/#/lab`);
  await page.locator('[data-testid=racks] [data-rack="rack-a"]').waitFor();
});
