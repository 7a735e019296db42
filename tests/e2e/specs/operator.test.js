// An operator's session in the browser against a real `testbay serve`: packs (with the
// broken fixture pack's error), launch, live queue and log, stop, results and detail.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, ensureUiBuilt, startServer, startBrowser, screenshot } from '../lib/harness.js';

let server;
let browser;
let page;
let scratchRoot;
const pageErrors = [];

before(async () => {
  ensureUiBuilt();
  // A pack folder this test edits while the console watches it.
  scratchRoot = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-packs-'));
  cpSync(path.join(ROOT, 'packs/net-regression'), path.join(scratchRoot, 'scratch-routers'), { recursive: true });
  const yaml = path.join(scratchRoot, 'scratch-routers/pack.yaml');
  writeFileSync(yaml, readFileSync(yaml, 'utf8').replace(/^name: .*$/m, 'name: scratch-routers'));
  server = await startServer({ packDirs: ['packs', 'tests/fixtures/packs', scratchRoot] });
  browser = await startBrowser();
  page = browser.page;
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (e) => pageErrors.push(e.message));
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (scratchRoot) rmSync(scratchRoot, { recursive: true, force: true });
});

/** Launch the stb-smoke pack's first group on `dut` from the Launch screen; returns the run id. */
async function launchOn(dut, { shot } = {}) {
  // A fresh form: leave the Launch screen first (the form keeps its values while shown).
  await page.goto(`${server.origin}/#/packs`);
  await page.goto(`${server.origin}/#/launch?pack=stb-smoke`);
  await page.locator('[data-testid=pack-select]').waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid=pack-select]')?.value === 'stb-smoke');
  // The first group is checked by default; the estimate follows the pack's est_task_time.
  await page.locator('[data-testid=launch-groups] input[type=checkbox]:checked').first().waitFor();
  await page.locator('[data-testid=dut-search], [data-testid=dut-names]').first().waitFor();
  await page.selectOption('[data-testid=ats-select]', 'rack-a');
  if (await page.locator('[data-testid=dut-search]').count()) {
    // StormTest-style DUT search narrows the list to matching DUTs valid for the pack.
    await page.fill('[data-testid=dut-search]', 'Name==stb-0*');
    const row = page.locator(`[data-testid=dut-table] tr[data-dut="${dut}"]`);
    await row.waitFor();
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('[data-testid=dut-table] tr[data-dut]')];
      return rows.length > 1 && rows.every((r) => /^stb-0/.test(r.dataset.dut));
    });
    // Routers are not valid for the set-top box pack, whatever the search says.
    await page.fill('[data-testid=dut-search]', 'Name==rtr-*');
    await page.locator('[data-testid=dut-table]', { hasText: 'No DUT valid for this pack matches' }).waitFor();
    assert.equal(await page.locator('[data-testid=dut-table] tr[data-dut]').count(), 0);
    await page.fill('[data-testid=dut-search]', 'Name==stb-0*');
    await row.locator('input[type=checkbox]').check();
  } else {
    // A console without a lab inventory takes DUT names as typed.
    await page.fill('[data-testid=dut-names]', dut);
  }
  assert.match(await page.textContent('[data-testid=estimate]'), /\d/, 'an estimated duration is shown');
  if (shot) await screenshot(page, shot);
  await page.click('[data-testid=launch]');
  await page.waitForURL(/#\/live\/[^/]+$/);
  const runId = decodeURIComponent(page.url().split('#/live/')[1]);
  await page.locator('[data-testid=run-id]', { hasText: runId }).waitFor();
  return runId;
}

/** The step the test is at, named in a failure together with a screenshot of the page. */
let step = 'start';

test('an operator browses packs, launches, watches, stops and reviews runs', async () => {
  try {
    await operatorSession();
  } catch (e) {
    const shot = path.join(tmpdir(), `testbay-e2e-failure-${Date.now()}.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    e.message = `at step "${step}" (page ${page.url()}, screenshot ${shot}): ${e.message}`;
    throw e;
  }
});

async function operatorSession() {
  // --- Packs: the demo packs load, the broken fixture pack shows its errors with file and line.
  step = 'Packs';
  await page.goto(server.url);
  await page.locator('[data-testid=packs-table] tr[data-pack="stb-smoke"]').waitFor();
  await page.locator('[data-testid=packs-table] tr[data-pack="net-regression"]').waitFor();
  const broken = page.locator('[data-testid=packs-table] tr[data-pack="broken-typo"]');
  await broken.waitFor();
  assert.match(await broken.textContent(), /broken/);
  await broken.click();
  const diags = page.locator('[data-testid=diagnostics] li');
  await diags.first().waitFor();
  const where = await page.locator('[data-testid=diagnostics] .where').allTextContents();
  assert.ok(where.some((w) => /\.ya?ml:\d+/.test(w)), `a diagnostic names a file and line: ${where.join(' | ')}`);
  await screenshot(page, 'packs-broken');
  await page.click('[data-testid=packs-table] tr[data-pack="stb-smoke"]');
  await page.locator('[data-testid=groups-table] tbody tr').first().waitFor();
  await page.locator('[data-testid=tasks-table] tbody tr').first().waitFor();
  await screenshot(page, 'packs');

  // The library follows the files: break a pack on disk and the list shows it, fix it back.
  step = 'pack reload from disk';
  const scratch = page.locator('[data-testid=packs-table] tr[data-pack="scratch-routers"]');
  assert.match(await scratch.textContent(), /ok/);
  const scratchYaml = path.join(scratchRoot, 'scratch-routers/pack.yaml');
  const good = readFileSync(scratchYaml, 'utf8');
  writeFileSync(scratchYaml, good.replace('  process_limit: 2', '  proces_limit: 2'));
  await page.locator('[data-testid=packs-table] tr[data-pack="scratch-routers"]', { hasText: 'broken' }).waitFor({ timeout: 30_000 });
  await scratch.click();
  await page.locator('[data-testid=diagnostics] .where', { hasText: /pack\.yaml:\d+/ }).waitFor();
  writeFileSync(scratchYaml, good);
  await page.locator('[data-testid=packs-table] tr[data-pack="scratch-routers"]', { hasText: 'ok' }).waitFor({ timeout: 30_000 });

  // --- A bad override is refused with the engine's reason, and nothing starts.
  step = 'bad launch';
  await page.goto(`${server.origin}/#/launch?pack=stb-smoke`);
  await page.locator('[data-testid=dut-table] tr[data-dut="stb-03"]').waitFor();
  await page.locator('[data-testid=dut-table] tr[data-dut="stb-03"] input[type=checkbox]').check();
  await page.fill('[data-param="process_limit"] input', '0');
  await page.click('[data-testid=launch]');
  await page.locator('[data-testid=launch-error]', { hasText: 'process_limit' }).waitFor();
  assert.match(page.url(), /#\/launch/);

  // --- Launch a demo run on a demo DUT; the UI goes to Live.
  step = 'Launch a demo run on a demo DUT; the UI goes to Live';
  const run1 = await launchOn('stb-01', { shot: 'launch' });

  // --- Live: tasks change state without a reload.
  step = 'Live';
  const states = async () =>
    page.$$eval('[data-testid=task-table] [data-task]', (rows) => rows.map((r) => `${r.dataset.task}=${r.dataset.state}`).join(','));
  await page.locator('[data-testid=task-table] [data-task]').first().waitFor();
  const first = await states();
  await page.waitForFunction(
    (before) =>
      [...document.querySelectorAll('[data-testid=task-table] [data-task]')].map((r) => `${r.dataset.task}=${r.dataset.state}`).join(',') !== before,
    first,
    { timeout: 60_000 },
  );
  // --- A live log: follow the long soak task while it runs and see its output arrive.
  step = 'A live log';
  const soak = page.locator('[data-testid=task-table] [data-task=soak_playback][data-state=running]');
  await soak.waitFor({ timeout: 60_000 });
  await soak.click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=log-view] .line').length >= 3, null, {
    timeout: 30_000,
  });
  assert.equal(
    await page.locator('[data-testid=task-table] [data-task=soak_playback]').getAttribute('data-state'),
    'running',
    'the log was read while the task still ran',
  );
  await screenshot(page, 'live');
  // The task table filters by state.
  await page.selectOption('[data-testid=state-filter]', 'done');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid=task-table] [data-task]')];
    return rows.length > 0 && rows.every((r) => r.dataset.state === 'done');
  });
  await page.selectOption('[data-testid=state-filter]', 'all');

  // --- Lab: racks with their slots, the reservation timeline, a manual hold and its release.
  step = 'Lab';
  await page.goto(`${server.origin}/#/lab`);
  await page.locator('[data-testid=racks] [data-rack="rack-a"]').waitFor();
  await page.locator('[data-testid=timeline]').waitFor();
  const slot = page.locator('[data-testid=racks] [data-dut="stb-05"]');
  assert.equal(await slot.getAttribute('data-state'), 'free');
  assert.equal(await page.locator('[data-testid=racks] [data-dut="stb-06"]').getAttribute('data-state'), 'offline');
  await page.selectOption('[data-testid=hold-target]', 'stb-05');
  await page.fill('[data-testid=hold-by]', 'e2e-operator');
  await page.click('[data-testid=hold]');
  await page.locator('[data-testid=racks] [data-dut="stb-05"][data-state=held]').waitFor();
  const holdRow = page.locator('[data-testid=reservations] tr[data-holder="e2e-operator"]');
  await holdRow.waitFor();
  assert.match(await holdRow.textContent(), /stb-05/);
  await screenshot(page, 'lab');
  await holdRow.locator('[data-testid=release]').click();
  // Release asks first.
  await page.click('[data-testid=confirm-ok]');
  await page.locator('[data-testid=racks] [data-dut="stb-05"][data-state=free]').waitFor();
  assert.equal(await holdRow.count(), 0, 'the released hold is gone');

  // --- A second run, stopped by the operator (with confirmation).
  step = 'A second run, stopped by the operator (with confirmation)';
  const run2 = await launchOn('stb-02');
  await page.click('[data-testid=stop]');
  await page.click('[data-testid=confirm-ok]');
  await page.locator('[data-testid=run-status]', { hasText: 'stopped' }).waitFor({ timeout: 30_000 });

  // --- Results: both runs are in the history; the detail shows the task tree and a log.
  step = 'Results';
  await page.goto(`${server.origin}/#/results`);
  await page.locator(`[data-testid=results-table] tr[data-run="${run1}"]`).waitFor();
  await page.locator(`[data-testid=results-table] tr[data-run="${run2}"]`).waitFor();
  assert.match(await page.locator(`[data-testid=results-table] tr[data-run="${run2}"]`).textContent(), /stopped/);
  // Text search narrows the server-paged history to the one run.
  await page.fill('[data-testid=results-search]', run2);
  await page.waitForFunction(
    (id) => {
      const rows = [...document.querySelectorAll('[data-testid=results-table] tr[data-run]')];
      return rows.length === 1 && rows[0].dataset.run === id;
    },
    run2,
  );
  await page.fill('[data-testid=results-search]', '');
  // So does the status filter.
  await page.selectOption('[data-testid=filter-status]', 'stopped');
  await page.waitForFunction(
    (id) => {
      const rows = [...document.querySelectorAll('[data-testid=results-table] tr[data-run]')];
      return rows.length === 1 && rows[0].dataset.run === id;
    },
    run2,
  );
  await page.selectOption('[data-testid=filter-status]', '');
  // The history follows the runs: the first one turns completed here when it ends.
  step = 'Results: first run completes';
  await page.locator(`[data-testid=results-table] tr[data-run="${run1}"]`, { hasText: 'completed' }).waitFor({ timeout: 90_000 });
  // The pack's pass-rate trend now has the completed run.
  await page.locator('.trend-item[data-pack="stb-smoke"] [data-verdict]').first().waitFor();
  await screenshot(page, 'results');
  await page.click(`[data-testid=results-table] tr[data-run="${run1}"]`);
  await page.locator('[data-testid=detail-run-id]', { hasText: run1 }).waitFor();
  // The task tree: a task with sub-results opens to show them; a task's log reads back.
  step = 'Results detail';
  const scan = page.locator('[data-testid=task-tree] tr[data-task=channel_scan]');
  await scan.waitFor();
  await scan.locator('button[aria-label=sub-results]').click();
  await page.locator('[data-testid=task-tree] tr.sub').first().waitFor();
  const taskRow = page.locator('[data-testid=task-tree] tr[data-task=record_show]');
  await taskRow.click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=log-view] .line').length > 0);
  await screenshot(page, 'results-detail');

  // Export: the reports come down as files.
  step = 'Export';
  const [junit] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-junit]')]);
  const xml = readFileSync(await junit.path(), 'utf8');
  assert.match(xml, /<testsuite/);
  assert.ok(xml.includes(run1), 'the JUnit report names the run');
  const [json] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-json]')]);
  assert.ok(JSON.parse(readFileSync(await json.path(), 'utf8')), 'the JSON export parses');

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
}
