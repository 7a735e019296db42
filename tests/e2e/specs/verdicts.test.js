// A run's verdict apart from its status: a completed run with a failed task says
// "failed" (its "completed" pill is not green) on Live and in Results; a stopped run
// counts what the stop aborted as aborted, not failed; a finished run shows its own
// duration, which stands still; the pass-rate trend counts runs.
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

async function finished(runId) {
  for (;;) {
    const d = await api({ cmd: 'get_run', run_id: runId, limit: 1 });
    if (d.run.verdict) return d.run;
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('verdicts, aborted counts and true durations', async () => {
  let step = 'failed run';
  try {
    // channel_scan reports channel 101 as Failed; the run still completes.
    const { run_id: failedRun } = await api({
      cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-01'],
      params: { weak_channels: [101], slow_seconds: 1 },
    });
    const rec = await finished(failedRun);
    assert.equal(rec.status, 'completed');
    assert.equal(rec.verdict, 'failed');

    await page.goto(`${server.origin}/#/live/${encodeURIComponent(failedRun)}`);
    await page.locator('[data-testid=run-verdict]', { hasText: 'failed' }).first().waitFor();
    const statusPill = page.locator('[data-testid=run-status]');
    assert.equal(await statusPill.textContent(), 'completed');
    assert.ok(!(await statusPill.getAttribute('class')).split(' ').includes('ok'), 'a completed run with a failure is not shown green');
    // A finished run shows its own duration, and it stands still.
    const took = (rec.finished_ms - rec.started_ms) / 1000;
    const times = page.locator('[data-testid=run-times]');
    assert.match(await times.textContent(), /^took /);
    const shown = await times.textContent();
    const secs = Number(/took (\d+(?:\.\d)?)s/.exec(shown)?.[1]);
    assert.ok(Math.abs(secs - took) <= 1, `shows ${shown} for a run of ${took}s`);
    await page.waitForTimeout(2_100);
    assert.equal(await times.textContent(), shown);

    step = 'stopped run';
    const { run_id: stoppedRun } = await api({
      cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-02'], params: { slow_seconds: 120 },
    });
    await page.goto(`${server.origin}/#/live/${encodeURIComponent(stoppedRun)}`);
    await page.locator('[data-testid=run-status]', { hasText: 'running' }).waitFor();
    // Elapsed counts on by itself while the run goes.
    const before = await page.locator('[data-testid=run-times]').textContent();
    assert.match(before, /^elapsed /);
    await page.waitForFunction((b) => document.querySelector('[data-testid=run-times]')?.textContent !== b, before);
    await page.click('[data-testid=stop]');
    await page.click('[data-testid=confirm-ok]');
    await page.locator('[data-testid=run-verdict]', { hasText: 'stopped' }).first().waitFor();
    await page.locator('[data-testid=aborted-count]').waitFor();
    assert.equal(await page.locator('[data-testid=failed-count]').count(), 0, 'aborted tasks are not failures');
    const stopped = await finished(stoppedRun);
    assert.ok(stopped.counts.aborted > 0);
    assert.equal(stopped.counts.failures, 0);

    step = 'a passed run, Results';
    // record_show always fails in the demo pack: a run that takes Failed as valid passes.
    const { run_id: passedRun } = await api({
      cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-03'],
      params: { slow_seconds: 1, valid_result: ['Passed', 'Completed', 'Skipped', 'Failed'] },
    });
    assert.equal((await finished(passedRun)).verdict, 'passed');
    await page.goto(`${server.origin}/#/results`);
    const row = (id) => page.locator(`[data-testid=results-table] tr[data-run="${id}"] [data-testid=verdict]`);
    await row(failedRun).filter({ hasText: 'failed' }).waitFor();
    await row(stoppedRun).filter({ hasText: 'stopped' }).waitFor();
    await row(passedRun).filter({ hasText: 'passed' }).waitFor();
    // One of the two runs that were not stopped passed.
    const trend = page.locator('.trend-item[data-pack="stb-smoke"]');
    await trend.locator('[data-testid=pass-rate]', { hasText: '50%' }).waitFor();
    assert.deepEqual(await trend.locator('[data-verdict]').evaluateAll((xs) => xs.map((x) => x.dataset.verdict)), ['failed', 'stopped', 'passed']);
    if (process.env.TESTBAY_BLESS) await screenshot(page, 'results-verdicts');
    await page.goto(`${server.origin}/#/results/${encodeURIComponent(failedRun)}`);
    await page.locator('[data-testid=detail-verdict]', { hasText: 'failed' }).waitFor();

    step = 'relaunch from Results, then from Live';
    await page.click('[data-testid=relaunch]');
    await page.waitForURL((u) => /#\/live\/[^/]+$/.test(u.toString()) && !u.toString().endsWith(encodeURIComponent(failedRun)));
    const again = decodeURIComponent(page.url().split('#/live/')[1]);
    const rerun = await finished(again);
    assert.deepEqual(rerun.params.weak_channels, [101], 'the same parameters');
    assert.deepEqual(rerun.duts.map((d) => d.name), ['stb-01']);
    assert.equal(rerun.content_hash, rec.content_hash, 'the same pack version');
    await page.locator('[data-testid=run-verdict]', { hasText: 'failed' }).first().waitFor();

    step = 'rerun failed';
    await page.click('[data-testid=rerun-failed]');
    await page.waitForURL((u) => /#\/live\/[^/]+$/.test(u.toString()) && !u.toString().endsWith(encodeURIComponent(again)));
    const failedOnly = decodeURIComponent(page.url().split('#/live/')[1]);
    await finished(failedOnly);
    const d = await api({ cmd: 'get_run', run_id: failedOnly });
    const tests = d.tasks.filter((t) => t.kind === 'test').map((t) => t.task).sort();
    assert.deepEqual(tests, ['boot', 'channel_scan', 'record_show'], 'the failed tests and their prereq');
    await page.goto(`${server.origin}/#/live/${encodeURIComponent(again)}`);
    await page.locator('[data-testid=run-verdict]', { hasText: 'failed' }).first().waitFor();
    await page.click('[data-testid=relaunch]');
    await page.waitForURL((u) => /#\/live\/[^/]+$/.test(u.toString()) && !u.toString().endsWith(encodeURIComponent(again)));
    await finished(decodeURIComponent(page.url().split('#/live/')[1]));
  } catch (e) {
    const shot = path.join(tmpdir(), `testbay-e2e-failure-${Date.now()}.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    e.message = `at step "${step}" (page ${page.url()}, screenshot ${shot}): ${e.message}`;
    throw e;
  }
});
