// The Queue and Schedules screens against a real console: a launch behind a held DUT
// waits in the queue (what for, move, priority, cancel) and starts when the hold ends;
// a schedule is created with the field a bad value names marked, then paused, resumed
// and deleted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser } from '../lib/harness.js';

let server;
let browser;
// A busy test machine must not hold queued runs back (the dispatch threshold).
const dataDir = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-queue-'));
writeFileSync(path.join(dataDir, 'settings.yaml'), 'dispatch_cpu_threshold: 100\n');

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const api = (request) => server.api(request);

test('the Queue screen shows who waits for what and moves, reprioritises and cancels', async () => {
  ensureUiBuilt();
  server = await startServer({ dataDir });
  browser = await startBrowser();
  const page = browser.page;
  page.setDefaultTimeout(20_000);

  const hold = await api({ cmd: 'hold', resource: 'stb-01', by: 'alice', duration_s: 600, from_ms: null, next_available: false });
  const launch = { cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-01'] };
  const a = await api(launch);
  const b = await api(launch);
  assert.ok(a.queued && b.queued, 'stb-01 is held: both launches wait');

  await page.goto(`${server.origin}/#/queue`);
  const rows = page.locator('[data-testid=queue] tbody tr');
  await rows.nth(1).waitFor();
  assert.equal(await rows.count(), 2);
  assert.match(await rows.nth(0).locator('[data-testid=waits-for]').innerText(), /stb-01 is held by operator alice/);
  assert.equal(await rows.nth(0).getAttribute('data-run'), a.run_id);

  await rows.nth(1).locator('[data-testid=up]').click();
  await page.locator(`[data-testid=queue] tbody tr:first-child[data-run="${b.run_id}"]`).waitFor();
  await page.locator(`tr[data-run="${a.run_id}"] [data-testid=priority]`).selectOption('low');
  await page.waitForFunction(
    (id) => document.querySelector(`tr[data-run="${id}"] [data-testid=priority]`)?.value === 'low',
    a.run_id,
  );
  const q = await api({ cmd: 'queue' });
  assert.deepEqual(q.runs.map((r) => [r.run_id, r.priority]), [[b.run_id, 'high'], [a.run_id, 'low']]);

  await page.locator(`tr[data-run="${b.run_id}"] [data-testid=cancel]`).click();
  await page.locator(`tr[data-run="${b.run_id}"]`).waitFor({ state: 'detached' });
  // The hold ends: the last queued run starts and leaves the queue.
  await api({ cmd: 'release', id: hold.id });
  await page.locator('[data-testid=queue-empty]').waitFor();
  await api({ cmd: 'stop_run', run_id: a.run_id }).catch(() => {});
});

test('the Schedules screen creates, marks a bad field, pauses, resumes and deletes', async () => {
  const page = browser.page;
  await page.goto(`${server.origin}/#/schedules`);
  const form = page.locator('[data-testid=schedule-form]');
  await form.locator('select[name=pack] option[value="stb-smoke"]').waitFor({ state: 'attached' });
  await form.locator('input[name=name]').fill('nightly smoke');
  await form.locator('select[name=pack]').selectOption('stb-smoke');
  await form.locator('select[name=type]').selectOption('weekly');
  await form.locator('input[name=start]').fill('2031-01-06T02:00');
  await form.locator('input[name=time_zone]').fill('UTC');
  await form.locator('[data-testid=save]').click();
  const err = form.locator('[data-testid=form-error]');
  await err.waitFor();
  assert.match(await err.innerText(), /^when\.days:/);
  await form.locator('fieldset.bad').waitFor();

  await form.locator('label.day', { hasText: 'mon' }).locator('input').check();
  await form.locator('[data-testid=save]').click();
  const row = page.locator('tr[data-schedule="nightly smoke"]');
  await row.waitFor();
  // Shown in the browser's own time zone; the console's answer is the instant.
  assert.match(await row.locator('[data-testid=next]').innerText(), /^2031-01-0[567] /);
  const [added] = await api({ cmd: 'list_schedules' });
  assert.equal(added.next_firing_ms, Date.UTC(2031, 0, 6, 2));

  await row.locator('[data-testid=pause]').click();
  await row.locator('[data-testid=next]', { hasText: 'paused' }).waitFor();
  await row.locator('[data-testid=resume]').click();
  await row.locator('[data-testid=pause]').waitFor();
  const [s] = await api({ cmd: 'list_schedules' });
  assert.equal(s.type, 'weekly');
  assert.equal(s.paused, false);
  await row.locator('[data-testid=delete]').click();
  await row.waitFor({ state: 'detached' });
});
