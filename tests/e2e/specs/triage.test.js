// Failure triage in the browser: one stored run of a fixture pack with three failures
// (made with `testbay run` before any rule exists), then rules added in Triage (a bad
// expression refused naming its rule), the counts per category, the run's failures marked
// known with their issue link or untriaged, and a rule removed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, ensureUiBuilt, startServer, startBrowser, screenshot, testbayBin } from '../lib/harness.js';

const PACK = path.join(ROOT, 'tests/fixtures/triage-packs/triage-e2e');

let dataDir;
let server;
let browser;
let page;
let runId;
const pageErrors = [];

before(async () => {
  ensureUiBuilt();
  dataDir = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-triage-'));
  const out = spawnSync(testbayBin(), ['--data-dir', dataDir, 'run', PACK], { cwd: ROOT, encoding: 'utf8' });
  const m = out.stdout.match(/run (r\S+) completed/);
  assert.ok(m, `testbay run did not complete:\n${out.stdout}\n${out.stderr}`);
  runId = m[1];
  server = await startServer({ packDirs: ['tests/fixtures/triage-packs'], dataDir });
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

async function addRule({ name, category, message = '', log = '', issue = '' }) {
  await page.fill('[data-testid=triage-name]', name);
  await page.fill('[data-testid=triage-category-input]', category);
  await page.fill('[data-testid=triage-message]', message);
  await page.fill('[data-testid=triage-log]', log);
  await page.fill('[data-testid=triage-issue]', issue);
  await page.click('[data-testid=triage-add]');
}

const count = (category) => page.locator(`[data-testid=triage-counts] tr[data-category="${category}"] td.num`);

test('triage rules, counts per category and known failures in a run', async () => {
  let step = 'no rules: every failure unknown';
  try {
    await page.goto(`${server.origin}/#/results`);
    await page.click('[data-testid=nav-triage]');
    await page.waitForURL(/#\/results\/triage$/);
    await page.locator('[data-testid=triage-totals]', { hasText: '3 failures in 1 run, 0 known' }).waitFor();
    assert.equal((await count('').textContent()).trim(), '3');

    step = 'a bad expression is refused naming its rule';
    await addRule({ name: 'broken', category: 'product', log: '(unclosed' });
    const err = page.locator('[data-testid=triage-form-error]');
    await err.waitFor();
    assert.match(await err.textContent(), /broken/);
    assert.equal(await page.locator('[data-testid=triage-rules] tr[data-rule]').count(), 0);

    step = 'rules added, counted at once over the stored run';
    await addRule({ name: 'net', category: 'infrastructure', message: 'connection refused', issue: 'https://tracker.example/LAB-1' });
    await page.locator('[data-testid=triage-rules] tr[data-rule=net]').waitFor();
    await addRule({ name: 'hdmi', category: 'product', log: 'HDMI hotplug lost' });
    await page.locator('[data-testid=triage-rules] tr[data-rule=hdmi]').waitFor();
    await page.locator('[data-testid=triage-totals]', { hasText: '2 known' }).waitFor();
    assert.equal((await count('infrastructure').textContent()).trim(), '1');
    assert.equal((await count('product').textContent()).trim(), '1');
    assert.equal((await count('').textContent()).trim(), '1');
    await screenshot(page, 'results-triage');

    step = 'the run shows which failures are known';
    await page.goto(`${server.origin}/#/results/${runId}`);
    const row = (task) => page.locator(`[data-testid=task-tree] tr[data-task=${task}]`);
    await row('net').locator('[data-testid=triage-category]').waitFor();
    assert.equal((await row('net').locator('[data-testid=triage-category]').textContent()).trim(), 'infrastructure');
    assert.equal(await row('net').locator('[data-testid=triage-issue-link]').getAttribute('href'), 'https://tracker.example/LAB-1');
    assert.equal((await row('hdmi').locator('[data-testid=triage-category]').textContent()).trim(), 'product');
    assert.equal(await row('plain').locator('[data-testid=triage-unknown]').count(), 1);
    assert.equal(await row('ok').locator('[data-testid=triage-category], [data-testid=triage-unknown]').count(), 0, 'a pass is no failure');
    await screenshot(page, 'results-triage-run');

    step = 'a rule removed';
    await page.goto(`${server.origin}/#/results/triage`);
    await page.locator('[data-testid=triage-rules] tr[data-rule=hdmi] [data-testid=triage-remove]').click();
    await page.locator('[data-testid=triage-totals]', { hasText: '1 known' }).waitFor();
    assert.equal(await page.locator('[data-testid=triage-rules] tr[data-rule]').count(), 1);
    assert.deepEqual(pageErrors, []);
  } catch (e) {
    await screenshot(page, `failed-triage-${step.replace(/\W+/g, '-')}`).catch(() => {});
    e.message = `[${step}] ${e.message}`;
    throw e;
  }
});
