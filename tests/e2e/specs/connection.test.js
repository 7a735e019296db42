// Connection loss is said across the page; after the console comes back every screen
// reloads: a run that was going when the console stopped shows how it ended (a restart
// marks it interrupted) in Live's list and pane. A bad run link keeps Export disabled; an
// empty history says "No runs yet", a filter matching nothing "No runs match".
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser } from '../lib/harness.js';

let server;
let browser;

after(async () => {
  await browser?.close();
  await server?.stop();
  if (server) rmSync(server.dataDir, { recursive: true, force: true });
});

test('connection loss, reconnect reloads, bad run link', async () => {
  ensureUiBuilt();
  server = await startServer();
  browser = await startBrowser();
  const page = browser.page;
  page.setDefaultTimeout(30_000);
  let step = 'empty history';
  try {
    await page.goto(`${server.origin}/#/results`);
    await page.locator('[data-testid=results-empty]', { hasText: 'No runs yet.' }).waitFor();
    await page.fill('[data-testid=results-search]', 'nothing-like-this');
    await page.locator('[data-testid=results-empty]', { hasText: 'No runs match.' }).waitFor();

    step = 'bad run link';
    await page.goto(`${server.origin}/#/results/r-no-such-run`);
    await page.locator('.error-box', { hasText: 'not found' }).waitFor();
    for (const f of ['junit', 'yaml', 'json']) assert.ok(await page.locator(`[data-testid=export-${f}]`).isDisabled(), `export ${f} disabled`);

    step = 'a run going';
    const res = await fetch(`${server.origin}/api`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-01'], params: { slow_seconds: 300 } }),
    });
    const runId = (await res.json()).data.run_id;
    await page.goto(`${server.origin}/#/live/${encodeURIComponent(runId)}`);
    await page.locator('[data-testid=run-status]', { hasText: 'running' }).waitFor();
    assert.equal(await page.locator('[data-testid=conn-banner]').count(), 0);

    step = 'connection lost';
    const first = server;
    server = null;
    await first.stop({ keepData: true });
    await page.locator('[data-testid=conn-banner]', { hasText: 'Connection to the console lost' }).waitFor();

    step = 'back';
    server = await first.restart();
    await page.locator('[data-testid=conn-banner]').waitFor({ state: 'detached' });
    // The run did not survive its console: Live's list and pane say so, not "running".
    await page.locator(`[data-testid=live-runs] tr[data-run="${runId}"] [data-testid=run-verdict]`, { hasText: 'errored' }).waitFor();
    await page.locator('[data-testid=not-live]', { hasText: 'interrupted' }).waitFor();
  } catch (e) {
    const shot = path.join(tmpdir(), `testbay-e2e-failure-${Date.now()}.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    e.message = `at step "${step}" (page ${page.url()}, screenshot ${shot}): ${e.message}`;
    throw e;
  }
});
