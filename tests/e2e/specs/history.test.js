// Results across runs in the browser: four stored runs of a fixture pack (made with
// `testbay run`), then a task's history strip, the flaky list with its mark in run detail,
// a compare with the previous run and with a pinned baseline (and its JUnit of new
// failures), and a measurement's chart with its limit lines.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, ensureUiBuilt, startServer, startBrowser, screenshot, testbayBin } from '../lib/harness.js';

const PACK = path.join(ROOT, 'tests/fixtures/history-packs/meas-e2e');
// Oldest first: `flip` passes, fails, passes, passes (flaky); snr_db 3.5 is out of limits.
const RUNS = [
  { flip: 'Passed', snr: 7 },
  { flip: 'Failed', snr: 8 },
  { flip: 'Passed', snr: 3.5 },
  { flip: 'Passed', snr: 7.5 },
];

let dataDir;
let server;
let browser;
let page;
const runIds = [];
const pageErrors = [];

before(async () => {
  ensureUiBuilt();
  dataDir = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-history-'));
  for (const r of RUNS) {
    const out = spawnSync(
      testbayBin(),
      ['--data-dir', dataDir, '--lab', path.join(ROOT, 'lab/demo-lab.yaml'), 'run', PACK, '--dut', 'stb-01', '--ats', 'rack-a', '-p', `flip=${r.flip}`, '-p', `snr=${r.snr}`],
      { cwd: ROOT, encoding: 'utf8' },
    );
    const m = out.stdout.match(/run (r\S+) completed/);
    assert.ok(m, `testbay run did not complete:\n${out.stdout}\n${out.stderr}`);
    runIds.push(m[1]);
  }
  server = await startServer({ packDirs: ['packs', 'tests/fixtures/history-packs'], dataDir });
  browser = await startBrowser();
  page = browser.page;
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (e) => pageErrors.push(e.message));
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('history, flaky, compare and a measurement chart', async () => {
  let step = 'flaky list';
  try {
    await page.goto(`${server.origin}/#/results`);
    await page.click('[data-testid=nav-flaky]');
    const flakyRow = page.locator('[data-testid=flaky-table] tr[data-task=flip]');
    await flakyRow.waitFor();
    // P F P P: 2 flips in 3 steps.
    assert.equal((await flakyRow.locator('[data-testid=flip-rate]').textContent()).trim(), '67%');
    assert.equal(await page.locator('[data-testid=flaky-table] tr[data-task=tune]').count(), 0, 'tune never flipped');
    assert.equal(await flakyRow.locator('[data-testid=strip] a').count(), 4);
    await screenshot(page, 'results-flaky');

    step = 'flaky mark and history from run detail';
    await page.goto(`${server.origin}/#/results/${runIds[3]}`);
    const flipRow = page.locator('[data-testid=task-tree] tr[data-task=flip]');
    await flipRow.locator('[data-testid=flaky-mark]').waitFor();
    assert.equal(await page.locator('[data-testid=task-tree] tr[data-task=tune] [data-testid=flaky-mark]').count(), 0);
    await flipRow.locator('[data-testid=task-history]').click();
    await page.waitForURL(/#\/results\/history\/meas-e2e\/flip$/);
    const strip = page.locator('[data-testid=history-strips] [data-dut=stb-01] [data-testid=strip] a');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=history-strips] [data-testid=strip] a').length === 4);
    const results = await strip.evaluateAll((as) => as.map((a) => a.dataset.result));
    assert.deepEqual(results, ['Passed', 'Failed', 'Passed', 'Passed'], 'oldest left, newest right');
    await page.locator('[data-testid=duration-chart]').waitFor();
    assert.equal(await page.locator('[data-testid=history-table] tbody tr').count(), 4);
    await screenshot(page, 'results-task-history');
    // A square links to its run.
    await strip.nth(1).click();
    await page.waitForURL(new RegExp(`#/results/${runIds[1]}$`));
    await page.locator('[data-testid=detail-run-id]', { hasText: runIds[1] }).waitFor();

    step = 'compare with the previous run';
    await page.locator('[data-testid=task-tree] tr[data-task=flip]').waitFor();
    await page.click('[data-testid=compare-previous]');
    await page.waitForURL(new RegExp(`#/results/compare/${runIds[0]}/${runIds[1]}$`));
    await page.locator('[data-testid=cmp-new_failures] tr[data-task=flip]').waitFor();
    assert.equal((await page.textContent('[data-testid=cmp-new_failures-count]')).trim(), '1');
    assert.equal((await page.textContent('[data-testid=cmp-fixed-count]')).trim(), '0');
    assert.equal((await page.textContent('[data-testid=cmp-still_passing-count]')).trim(), '1');
    await screenshot(page, 'results-compare');
    // The reverse, from run detail naming the other run: the failure is fixed.
    await page.goto(`${server.origin}/#/results/${runIds[2]}`);
    await page.click('[data-testid=compare-other]');
    await page.waitForURL(new RegExp(`#/results/compare/${runIds[2]}$`));
    assert.equal(await page.inputValue('[data-testid=compare-b]'), runIds[2]);
    await page.fill('[data-testid=compare-a]', runIds[1]);
    await page.fill('[data-testid=compare-b]', runIds[2]);
    await page.click('[data-testid=compare-go]');
    await page.locator('[data-testid=cmp-fixed] tr[data-task=flip]').waitFor();

    step = 'baseline: pin, compare with it, JUnit of new failures';
    await page.goto(`${server.origin}/#/results/${runIds[0]}`);
    await page.click('[data-testid=pin-baseline]');
    await page.locator('[data-testid=is-baseline]').waitFor();
    await page.goto(`${server.origin}/#/results/${runIds[1]}`);
    await page.click('[data-testid=compare-baseline]');
    await page.waitForURL(new RegExp(`#/results/compare/${runIds[0]}/${runIds[1]}$`));
    await page.locator('[data-testid=cmp-new_failures] tr[data-task=flip]').waitFor();
    const [junit] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-new-failures]')]);
    assert.equal(junit.suggestedFilename(), `${runIds[1]}.new-failures.xml`);
    const xml = readFileSync(await junit.path(), 'utf8');
    assert.match(xml, /name="flip"/);
    assert.doesNotMatch(xml, /name="tune"/);

    step = 'measurement in run detail and its chart';
    await page.goto(`${server.origin}/#/results/${runIds[2]}`);
    await page.locator('[data-testid=task-tree] tr[data-task=tune]').click();
    const meas = page.locator('[data-testid=measurements] tr[data-measurement=snr_db]');
    await meas.waitFor();
    assert.match(await meas.textContent(), /3\.5 dB/);
    assert.match(await meas.textContent(), /out of limits/);
    await meas.locator('a').click();
    await page.waitForURL(/#\/results\/measurement\/meas-e2e\/tune\/channel_101\/snr_db$/);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=measurement-point]').length === 4);
    assert.equal(await page.locator('[data-testid=measurement-point].bad').count(), 1, 'one value out of limits');
    for (const lim of ['limit-low', 'limit-high']) {
      assert.ok((await page.getAttribute(`[data-testid=${lim}]`, 'd')).length > 0, `${lim} drawn`);
    }
    await page.locator('[data-testid=yield]', { hasText: '75%' }).waitFor();
    await screenshot(page, 'results-measurement');
    assert.deepEqual(pageErrors, []);
  } catch (e) {
    await screenshot(page, `failed-history-${step.replace(/\W+/g, '-')}`).catch(() => {});
    e.message = `[${step}] ${e.message}`;
    throw e;
  }
});
