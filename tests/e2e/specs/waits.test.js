// Waits shown as they are: a run launched on a DUT an operator holds is queued, Lab lists
// it (what it waits for and who holds it) beside the hold, the Queue screen says the
// same; releasing the hold from Lab (asked first) starts the waiting run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser, screenshot } from '../lib/harness.js';

let server;
let browser;
let page;

before(async () => {
  ensureUiBuilt();
  server = await startServer();
  browser = await startBrowser();
  page = browser.page;
  page.setDefaultTimeout(30_000);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const api = (request) => server.api(request);

test('a waiting run is shown waiting and starts when the hold is released', async () => {
  let step = 'hold';
  try {
    await page.goto(`${server.origin}/#/lab`);
    await page.selectOption('[data-testid=hold-target]', 'stb-04');
    await page.fill('[data-testid=hold-by]', 'mallory');
    await page.click('[data-testid=hold]');
    await page.locator('[data-testid=racks] [data-dut="stb-04"][data-state=held]').waitFor();

    step = 'launch on the held DUT';
    const { run_id: runId } = await api({ cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-04'], params: { slow_seconds: 1 } });
    const waiter = page.locator(`[data-testid=waiters] tr[data-waiter="${runId}"]`);
    await waiter.waitFor();
    assert.match(await waiter.textContent(), /stb-04 is held by .*mallory/);
    await page.locator('[data-testid=racks] [data-dut="stb-04"] .wait').waitFor();
    if (process.env.TESTBAY_BLESS) await screenshot(page, 'lab-waiters');

    step = 'the Queue screen says the same';
    await page.goto(`${server.origin}/#/queue`);
    await page.locator(`text=${runId}`).first().waitFor();
    const queue = await api({ cmd: 'queue' });
    const mine = queue.runs.find((r) => r.run_id === runId);
    assert.ok(mine, 'the run is queued while the DUT is held');
    assert.match(mine.waits_for, /stb-04 is held by .*mallory/);

    step = 'release from Lab';
    await page.goto(`${server.origin}/#/lab`);
    await waiter.waitFor();
    await page.locator('[data-testid=reservations] tr[data-holder="mallory"] [data-testid=release]').click();
    await page.locator('[data-testid=confirm]').waitFor();
    await page.click('[data-testid=confirm-ok]');
    await waiter.waitFor({ state: 'detached' });

    step = 'the run starts';
    await page.goto(`${server.origin}/#/live/${encodeURIComponent(runId)}`);
    await page.waitForFunction(() => {
      const p = document.querySelector('[data-testid=progress]')?.textContent ?? '';
      return /^[1-9]\d*\//.test(p);
    });
    await page.locator('[data-testid=run-verdict]').first().waitFor({ timeout: 60_000 });
  } catch (e) {
    const shot = path.join(tmpdir(), `testbay-e2e-failure-${Date.now()}.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    e.message = `at step "${step}" (page ${page.url()}, screenshot ${shot}): ${e.message}`;
    throw e;
  }
});
