// Lab, one book one picture: a slot opens its DUT's page (by keyboard too): details,
// health, current holder, the pass rate of its runs and those runs, linked to Results.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
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

async function finished(runId) {
  for (;;) {
    const d = await api({ cmd: 'get_run', run_id: runId, limit: 1 });
    if (d.run.verdict) return d.run;
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('a slot opens its DUT page with health, holder, pass rate and recent runs', async () => {
  // Two runs on stb-01: one passes (record_show always fails in the demo pack: this run
  // takes Failed as valid), one fails.
  const { run_id: good } = await api({
    cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-01'],
    params: { slow_seconds: 1, valid_result: ['Passed', 'Completed', 'Skipped', 'Failed'] },
  });
  assert.equal((await finished(good)).verdict, 'passed');
  const { run_id: bad } = await api({ cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-01'], params: { slow_seconds: 1 } });
  assert.equal((await finished(bad)).verdict, 'failed');
  // A run on another DUT is not on stb-01's page.
  const { run_id: other } = await api({ cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-02'], params: { slow_seconds: 1 } });
  await finished(other);
  const hold = await api({ cmd: 'hold', resource: 'stb-01', by: 'mallory', duration_s: 600 });

  await page.goto(`${server.origin}/#/lab`);
  const slot = page.locator('[data-testid=racks] [data-dut="stb-01"]');
  await slot.locator('text=mallory').waitFor();
  await slot.focus();
  await page.keyboard.press('Enter');
  const dut = page.locator('[data-testid=dut-page][data-dut="stb-01"]');
  await dut.waitFor();
  assert.match(page.url(), /#\/lab\/dut\/stb-01$/);
  const details = await dut.locator('[data-testid=dut-details]').textContent();
  assert.match(details, /TP-4000/);
  assert.match(details, /rack-a/);
  assert.match(await dut.locator('[data-testid=dut-holder]').textContent(), /mallory/);
  await dut.locator('[data-testid=dut-health] .pill').waitFor();
  await dut.locator('[data-testid=dut-pass-rate]', { hasText: '50% (1/2 runs)' }).waitFor();
  const runs = await dut.locator('[data-testid=dut-runs] tr[data-run]').evaluateAll((els) => els.map((e) => e.dataset.run));
  assert.deepEqual(runs.sort(), [good, bad].sort());
  if (process.env.TESTBAY_BLESS) await screenshot(page, 'lab-dut-page');

  // The page follows the DUT live, in place: the hold ends and a new run on stb-01 shows in
  // its recent runs without reopening the page (and without the list going blank).
  await api({ cmd: 'release', id: (hold.data ?? hold).id });
  await dut.locator('[data-testid=dut-holder]', { hasText: 'nobody' }).waitFor();
  const { run_id: third } = await api({ cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-01'], params: { slow_seconds: 1 } });
  await finished(third);
  await dut.locator(`[data-testid=dut-runs] tr[data-run="${third}"]`).waitFor();
  await dut.locator('[data-testid=dut-pass-rate]', { hasText: '(1/3 runs)' }).waitFor();

  // A run's link opens it in Results.
  await dut.locator(`tr[data-run="${bad}"] a`).click();
  await page.waitForURL(new RegExp(`#/results/${encodeURIComponent(bad)}$`));

  // Back on the page, Esc closes it.
  await page.goto(`${server.origin}/#/lab/dut/stb-01`);
  await dut.waitFor();
  await page.keyboard.press('Escape');
  await dut.waitFor({ state: 'detached' });
  assert.match(page.url(), /#\/lab$/);
});
