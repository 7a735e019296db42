// The real desktop app (debug build) under Xvfb, driven like an operator: it shows the
// demo packs, launches a demo run on a demo DUT and sees it finish. Screenshots go to
// test-output/screenshots/desktop-*.png (docs/screenshots with TESTBAY_BLESS=1).
// Run: xvfb-run -a node --test tests/desktop/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startApp, waitFor } from './webdriver.mjs';

let app;
// A home of its own, so files the app saves land in a known ~/Downloads.
const home = mkdtempSync(path.join(tmpdir(), 'testbay-desktop-home-'));

before(async () => {
  app = await startApp({ env: { HOME: home } });
});

after(async () => {
  await app?.close();
  rmSync(home, { recursive: true, force: true });
});

test('the desktop app shows the packs, launches a demo run and sees it finish', { timeout: 240_000 }, async () => {
  // The page talks to the engine over Tauri IPC, not HTTP.
  await app.waitFor('body');
  assert.equal(await app.exec("return '__TAURI_INTERNALS__' in window"), true, 'runs inside Tauri');

  // Packs: the library lists both demo packs.
  await app.waitFor('[data-testid=packs-table] tr[data-pack="stb-smoke"]', 30_000);
  await app.waitFor('[data-testid=packs-table] tr[data-pack="net-regression"]');
  await app.screenshot('desktop-packs');

  // Launch the stb-smoke pack's default group on stb-02.
  await app.exec("location.hash = '#/launch?pack=stb-smoke'");
  await waitFor('pack selected', () =>
    app.exec("return document.querySelector('[data-testid=pack-select]')?.value === 'stb-smoke'"),
  );
  await app.waitFor('[data-testid=launch-groups] input[type=checkbox]:checked');
  await app.type('[data-testid=dut-search]', 'Name==stb-02');
  await app.waitFor('[data-testid=dut-table] tr[data-dut="stb-02"] input[type=checkbox]');
  await waitFor('search narrowed to stb-02', () =>
    app.exec(
      "return [...document.querySelectorAll('[data-testid=dut-table] tr[data-dut]')].every((r) => r.dataset.dut === 'stb-02')",
    ),
  );
  await app.click('[data-testid=dut-table] tr[data-dut="stb-02"] input[type=checkbox]');
  await app.screenshot('desktop-launch');
  await app.click('[data-testid=launch]');

  // Live: the run appears and finishes.
  const runId = await waitFor('the live view of the new run', async () => {
    const hash = await app.exec('return location.hash');
    const m = /^#\/live\/(.+)$/.exec(hash);
    return m && decodeURIComponent(m[1]);
  });
  await waitFor('run id shown', async () => (await app.text('[data-testid=run-id]')) === runId);
  await waitFor('a task running or done', () =>
    app.exec("return !!document.querySelector('[data-testid=task-table] [data-state=running], [data-testid=task-table] [data-state=done]')"),
  );
  await app.screenshot('desktop-live');
  const status = await waitFor(
    'the run to finish',
    async () => {
      const s = ((await app.text('[data-testid=run-status]')) ?? '').trim().toLowerCase();
      return ['completed', 'stopped', 'could not start', 'interrupted'].includes(s) && s;
    },
    180_000,
  );
  assert.equal(status, 'completed', `run ${runId} ended ${status}`);
  const progress = await app.text('[data-testid=progress]');
  const [done, total] = progress.split('/').map(Number);
  assert.ok(total > 0 && done === total, `every task done: ${progress}`);
  await app.screenshot('desktop-finished');

  // Results: an export is saved to the download folder, and the app says where.
  await app.exec(`location.hash = '#/results/${encodeURIComponent(runId)}'`);
  await app.click('[data-testid=export-json]');
  const saved = await waitFor('the saved notice', () => app.exec("return document.querySelector('[data-testid=saved]')?.title ?? null"));
  assert.equal(path.dirname(saved), path.join(home, 'Downloads'), `saved to ${saved}`);
  await waitFor('the export on disk', () => existsSync(saved));
  const exported = JSON.parse(readFileSync(saved, 'utf8'));
  assert.equal(exported.run.id, runId, 'the saved file is this run\'s export');
  await app.screenshot('desktop-saved');
});
