// Retention in the browser: three stored runs of a fixture pack and a policy keeping the
// newest one per pack; the oldest run marked keep from its page, then Storage shows the
// data directory's size and what a prune would remove (only the middle run), prunes it,
// and the kept run still opens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, ensureUiBuilt, startServer, startBrowser, screenshot, testbayBin } from '../lib/harness.js';

const PACK = path.join(ROOT, 'tests/fixtures/triage-packs/triage-e2e');

let dataDir;
let server;
let browser;
let page;
const runIds = [];
const pageErrors = [];

before(async () => {
  ensureUiBuilt();
  dataDir = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-retention-'));
  for (let i = 0; i < 3; i++) {
    const out = spawnSync(testbayBin(), ['--data-dir', dataDir, 'run', PACK], { cwd: ROOT, encoding: 'utf8' });
    const m = out.stdout.match(/run (r\S+) completed/);
    assert.ok(m, `testbay run did not complete:\n${out.stdout}\n${out.stderr}`);
    runIds.push(m[1]);
  }
  writeFileSync(path.join(dataDir, 'settings.yaml'), 'retention:\n  runs_per_pack: 1\n');
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

test('keep a run, see the data dir size, prune what the policy removes', async () => {
  let step = 'keep the oldest run';
  try {
    await page.goto(`${server.origin}/#/results/${runIds[0]}`);
    const keep = page.locator('[data-testid=keep]');
    await keep.waitFor();
    assert.equal((await keep.textContent()).trim(), 'Keep');
    await keep.click();
    await page.locator('[data-testid=keep]', { hasText: 'Kept' }).waitFor();

    step = 'storage: sizes and the preview';
    await page.goto(`${server.origin}/#/results`);
    await page.click('[data-testid=nav-storage]');
    await page.waitForURL(/#\/results\/storage$/);
    await page.locator('[data-testid=data-usage] tr[data-kind=database]').waitFor();
    assert.match(await page.locator('[data-testid=data-usage] tr[data-kind=logs]').textContent(), /\d+ B/);
    assert.match(await page.textContent('[data-testid=retention-policy]'), /newest 1 runs of each pack/);
    await page.locator('[data-testid=prune-preview]', { hasText: '1 run would go' }).waitFor();
    const listed = await page.locator('[data-testid=prune-runs] tr[data-run]').evaluateAll((rs) => rs.map((r) => r.dataset.run));
    assert.deepEqual(listed, [runIds[1]], 'not the kept run, not the newest');
    await screenshot(page, 'results-storage');

    step = 'prune now';
    await page.click('[data-testid=prune-now]');
    await page.locator('[data-testid=prune-done]', { hasText: 'Removed 1 run' }).waitFor();
    await page.locator('[data-testid=prune-preview]', { hasText: '0 runs would go' }).waitFor();
    assert.ok(!existsSync(path.join(dataDir, 'runs', runIds[1])), 'its folder is gone');
    assert.ok(existsSync(path.join(dataDir, 'runs', runIds[0])), 'the kept run stays');

    step = 'the kept run still opens';
    await page.goto(`${server.origin}/#/results/${runIds[0]}`);
    await page.locator('[data-testid=keep]', { hasText: 'Kept' }).waitFor();
    assert.deepEqual(pageErrors, []);
  } catch (e) {
    await screenshot(page, `failed-retention-${step.replace(/\W+/g, '-')}`).catch(() => {});
    e.message = `[${step}] ${e.message}`;
    throw e;
  }
});
