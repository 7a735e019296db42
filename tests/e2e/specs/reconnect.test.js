// The browser keeps up when the console goes away and comes back: the event stream
// reconnects with backoff and the screen reloads what it missed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { ensureUiBuilt, startServer, startBrowser } from '../lib/harness.js';

let server;
let browser;

after(async () => {
  await browser?.close();
  await server?.stop();
  if (server) rmSync(server.dataDir, { recursive: true, force: true });
});

async function launch(origin, dut) {
  const res = await fetch(`${origin}/api`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], ats: 'rack-a', duts: [dut] }),
  });
  const body = await res.json();
  assert.ok(body.data?.run_id, JSON.stringify(body));
  return body.data.run_id;
}

test('the event stream reconnects after the console restarts and the view catches up', async () => {
  ensureUiBuilt();
  server = await startServer();
  browser = await startBrowser();
  const page = browser.page;
  page.setDefaultTimeout(20_000);
  await page.goto(`${server.origin}/#/results`);
  await page.locator('[data-testid=results-table]').waitFor();
  await page.locator('.conn', { hasText: 'live' }).waitFor();

  const firstServer = server;
  server = null;
  const dataDir = firstServer.dataDir;
  await firstServer.stop({ keepData: true });
  await page.locator('.conn', { hasText: 'reconnecting' }).waitFor();

  server = await firstServer.restart();
  assert.equal(server.dataDir, dataDir);
  // A run that starts while the page may still be reconnecting shows up without a reload.
  const runId = await launch(server.origin, 'stb-01');
  await page.locator('.conn', { hasText: 'live' }).waitFor({ timeout: 30_000 });
  await page.locator(`[data-testid=results-table] tr[data-run="${runId}"]`).waitFor({ timeout: 30_000 });
  await fetch(`${server.origin}/api`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ cmd: 'stop_run', run_id: runId }) });
});
