// Sections a task reports while it runs appear on Live, nested under the selected task,
// running then passed, with a measurement judged against its limits.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser, screenshot } from '../lib/harness.js';

let server;
let browser;
const packs = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-sections-'));

after(async () => {
  await browser?.close();
  await server?.stop();
  if (server) rmSync(server.dataDir, { recursive: true, force: true });
  rmSync(packs, { recursive: true, force: true });
});

const TASK = `
import os, time, testbay
go = os.path.join(os.environ["TESTBAY_ARTIFACTS"], "go")
while not os.path.exists(go):
    time.sleep(0.05)
with testbay.section("boot"):
    with testbay.step("login"):
        testbay.measure("login_time", 1.5, units="s", high=30)
    done = os.path.join(os.environ["TESTBAY_ARTIFACTS"], "done")
    while not os.path.exists(done):
        time.sleep(0.05)
`;

function artifactsOf(dataDir, runId) {
  const lane = path.join(dataDir, 'runs', runId, 'local');
  if (!existsSync(lane)) return null;
  const occ = readdirSync(lane).map((d) => path.join(lane, d)).find((d) => existsSync(path.join(d, 'artifacts')));
  return occ ? path.join(occ, 'artifacts') : null;
}

async function waitFor(fn) {
  for (let i = 0; i < 600; i++) {
    const v = fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('timed out');
}

test('live sections grow under the task while it runs', async () => {
  ensureUiBuilt();
  const pack = path.join(packs, 'live-sections');
  mkdirSync(path.join(pack, 'tasks'), { recursive: true });
  writeFileSync(path.join(pack, 'pack.yaml'), "name: live-sections\nversion: '1'\ngroups:\n  g:\n    tests: [radio]\n");
  writeFileSync(path.join(pack, 'tasks/radio.yaml'), 'name: radio\nrun: [python3, radio.py]\n');
  writeFileSync(path.join(pack, 'tasks/radio.py'), TASK);
  server = await startServer({ packDirs: [packs] });
  browser = await startBrowser();
  const page = browser.page;
  page.setDefaultTimeout(20_000);
  const res = await fetch(`${server.origin}/api`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ cmd: 'launch', pack: 'live-sections', groups: [] }),
  });
  const body = await res.json();
  const runId = body.data?.run_id;
  assert.ok(runId, JSON.stringify(body));
  await page.goto(`${server.origin}/#/live/${runId}`);
  await page.locator('[data-testid=task-table]').getByText('radio').first().waitFor();
  const artifacts = await waitFor(() => artifactsOf(server.dataDir, runId));
  writeFileSync(path.join(artifacts, 'go'), '');

  const boot = page.locator('[data-testid=live-section]', { hasText: 'boot' });
  await boot.waitFor();
  assert.equal(await boot.getAttribute('data-state'), 'running');
  const login = page.locator('[data-testid=live-section]', { hasText: 'login' });
  await page.locator('[data-testid=live-section][data-state=Passed]', { hasText: 'login' }).waitFor();
  assert.equal(await login.getAttribute('data-state'), 'Passed');
  await page.locator('[data-testid=live-measurement]', { hasText: 'within limits' }).waitFor();
  await screenshot(page, 'live-sections');

  // A screen opened mid-task starts from what was reported before it listened.
  await page.reload();
  await page.locator('[data-testid=live-section][data-state=Passed]', { hasText: 'login' }).waitFor();
  await page.locator('[data-testid=live-section][data-state=running]', { hasText: 'boot' }).waitFor();

  writeFileSync(path.join(artifacts, 'done'), '');
  await page.locator('[data-testid=live-section][data-state=Passed]', { hasText: 'boot' }).waitFor();

  // Results shows the stored tree the same way once the run is over.
  await page.locator('[data-testid=run-verdict]').first().waitFor();
  await page.goto(`${server.origin}/#/results/${runId}`);
  await page.locator('tr[data-task=radio]').click();
  const stored = page.locator('[data-testid=result-sections]');
  await stored.locator('[data-testid=live-section][data-state=Passed]', { hasText: 'login' }).waitFor();
  await stored.locator('[data-testid=live-measurement]', { hasText: 'within limits' }).waitFor();
});
