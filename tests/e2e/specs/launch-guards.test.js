// The Launch form never sends what it shows invalid, says why Launch is disabled, puts
// every error on its field (its own and the server's), shows the selected DUTs as chips,
// drops the DUTs a chosen ATS hides, warns of a held DUT, and Ctrl+Enter launches. A
// launch invalid as written stores no run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser, screenshot } from '../lib/harness.js';

let server;
let browser;
let page;
const launches = [];

before(async () => {
  ensureUiBuilt();
  server = await startServer();
  browser = await startBrowser();
  page = browser.page;
  page.setDefaultTimeout(20_000);
  page.on('request', (r) => {
    if (r.url().endsWith('/api') && r.method() === 'POST' && /"cmd":"launch"/.test(r.postData() ?? '')) launches.push(JSON.parse(r.postData()));
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const api = (request) => server.post(request);

const why = () => page.locator('[data-testid=launch-why]');
const hint = (key) => page.locator(`[data-param="${key}"] [data-testid=param-hint]`);
const chips = async () => page.locator('[data-testid=dut-chips] [data-chip]').evaluateAll((xs) => xs.map((x) => x.dataset.chip));

test('the launch form guards what it sends', async () => {
  let step = 'open';
  try {
    await page.goto(`${server.origin}/#/launch?pack=stb-smoke`);
    await page.waitForFunction(() => document.querySelector('[data-testid=pack-select]')?.value === 'stb-smoke');
    await page.locator('[data-testid=dut-table] tr[data-dut="stb-01"]').waitFor();
    await page.locator('[data-param="channel_list"]').waitFor();

    step = 'nothing chosen';
    assert.ok(await page.locator('[data-testid=launch]').isDisabled());
    await why().filter({ hasText: 'Choose at least one DUT' }).waitFor();

    step = 'chips and ATS';
    await page.selectOption('[data-testid=ats-select]', 'rack-a');
    await page.locator('[data-testid=dut-table] tr[data-dut="stb-01"] input[type=checkbox]').check();
    await page.locator('[data-testid=dut-chips] [data-chip="stb-01"]').waitFor();
    // rack-b does not hold stb-01: choosing it takes stb-01 off the selection, saying so.
    await page.selectOption('[data-testid=ats-select]', 'rack-b');
    await page.locator('[data-testid=dut-dropped]', { hasText: 'stb-01' }).waitFor();
    assert.deepEqual(await chips(), []);
    await why().filter({ hasText: 'Choose at least one DUT' }).waitFor();
    await page.selectOption('[data-testid=ats-select]', 'rack-a');
    await page.locator('[data-testid=dut-table] tr[data-dut="stb-02"] input[type=checkbox]').check();
    assert.deepEqual(await chips(), ['stb-02']);
    // A chip stays while the search hides its row.
    await page.fill('[data-testid=dut-search]', 'Name==stb-03');
    await page.waitForFunction(() => !document.querySelector('[data-testid=dut-table] tr[data-dut="stb-02"]'));
    assert.deepEqual(await chips(), ['stb-02']);

    step = 'bad list';
    await page.fill('[data-param="channel_list"] input', '101, abc');
    await hint('channel_list').filter({ hasText: 'numbers, separated by commas' }).waitFor();
    assert.ok(await page.locator('[data-testid=launch]').isDisabled());
    await why().filter({ hasText: 'Fix parameter channel_list' }).waitFor();
    await page.locator('[data-param="channel_list"] input').press('Control+Enter');
    await page.fill('[data-param="channel_list"] input', ', abc');
    await why().filter({ hasText: 'channel_list' }).waitFor();
    await page.fill('[data-param="channel_list"] input', '101, 102');
    await why().waitFor({ state: 'detached' });

    step = 'cleared number, emptied valid_result';
    await page.fill('[data-param="slow_seconds"] input', '');
    await hint('slow_seconds').filter({ hasText: 'needs a number' }).waitFor();
    await page.fill('[data-param="valid_result"] input', '');
    await hint('valid_result').filter({ hasText: 'at least one result name' }).waitFor();
    await why().filter({ hasText: 'Fix parameters valid_result, slow_seconds' }).waitFor();
    await page.keyboard.press('Control+Enter');
    await page.fill('[data-param="slow_seconds"] input', '1');
    await page.fill('[data-param="valid_result"] input', 'Passed, Completed, Skipped');
    await why().waitFor({ state: 'detached' });
    assert.equal(launches.length, 0, 'nothing the form showed invalid was sent');

    step = 'server refuses, field marked, no run stored';
    await page.fill('[data-param="process_limit"] input', '-1');
    await page.click('[data-testid=launch]');
    await page.locator('[data-testid=launch-error]', { hasText: 'process_limit' }).waitFor();
    await page.locator('[data-param="process_limit"].invalid [data-testid=param-hint]', { hasText: 'process_limit' }).waitFor();
    assert.equal(launches.length, 1);
    assert.equal((await api({ cmd: 'list_runs' })).data.total, 0, 'a launch invalid as written stores no run');
    // Changing the value takes the server's word off the field.
    await page.fill('[data-param="process_limit"] input', '1');
    await page.locator('[data-param="process_limit"].invalid').waitFor({ state: 'detached' });

    step = 'held DUT warned about';
    const hold = await api({ cmd: 'hold', resource: 'stb-02', by: 'mallory', duration_s: 600 });
    await page.locator('[data-testid=dut-warning]', { hasText: 'stb-02 is held by' }).waitFor();
    if (process.env.TESTBAY_BLESS) await screenshot(page, 'launch-guards');
    await api({ cmd: 'release', id: hold.data.id });
    await page.locator('[data-testid=dut-warning]').waitFor({ state: 'detached' });

    step = 'Ctrl+Enter launches';
    await page.locator('[data-param="process_limit"] input').press('Control+Enter');
    await page.waitForURL(/#\/live\/[^/]+$/);
    const runId = decodeURIComponent(page.url().split('#/live/')[1]);
    assert.equal(launches.length, 2);
    assert.deepEqual(launches[1].params, { channel_list: [101, 102], slow_seconds: 1, process_limit: 1 });
    await api({ cmd: 'stop_run', run_id: runId });
    await api({ cmd: 'stop_run', run_id: runId });
  } catch (e) {
    const shot = path.join(tmpdir(), `testbay-e2e-failure-${Date.now()}.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    e.message = `at step "${step}" (page ${page.url()}, screenshot ${shot}): ${e.message}`;
    throw e;
  }
});
