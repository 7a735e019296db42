// Lab, one book one picture: DUT search with StormTest terms dims the slots that do not
// match (a bad term says why); an operator's hold is extended from its row by keyboard;
// the timeline shows the reservations that ended.
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

test('DUT search on Lab marks the matching slots', async () => {
  await page.goto(`${server.origin}/#/lab`);
  await page.locator('[data-testid=racks] [data-dut="stb-01"]').waitFor();
  await page.getByLabel('Find DUTs').fill('Model==GX-*');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid=dut-search-count]', { hasText: '4 of' }).waitFor();
  const matching = await page.locator('[data-testid=racks] [data-match=true]').evaluateAll((els) => els.map((e) => e.dataset.dut));
  assert.deepEqual(matching.sort(), ['stb-09', 'stb-10', 'stb-11', 'stb-12']);
  assert.equal(await page.locator('[data-testid=racks] [data-dut="stb-01"]').getAttribute('data-match'), 'false');
  if (process.env.TESTBAY_BLESS) await screenshot(page, 'lab-search');

  await page.getByLabel('Find DUTs').fill('Colour==red');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid=dut-search-error]').waitFor();

  await page.click('[data-testid=dut-search-clear]');
  assert.equal(await page.locator('[data-testid=racks] [data-match]').count(), 0, 'Show all clears the marks');
});

test('an operator hold is extended from Lab with the keyboard', async () => {
  const held = await api({ cmd: 'hold', resource: 'stb-02', by: 'mallory', duration_s: 600 });
  await page.goto(`${server.origin}/#/lab`);
  const row = page.locator(`[data-testid=reservations] tr[data-reservation="${held.id}"]`);
  await row.waitFor();
  await row.locator('[data-testid=extend]').focus();
  await page.keyboard.press('Enter');
  const minutes = page.locator('[data-testid=extend-minutes]');
  await minutes.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'extend-minutes', 'the minutes field takes focus');
  await minutes.fill('45');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid=extend-form]').waitFor({ state: 'detached' });
  const book = await api({ cmd: 'reservations' });
  const now = book.resources.flatMap((r) => r.holders).find((r) => r.id === held.id);
  assert.equal(now.end, held.end + 45 * 60_000, 'the hold ends 45 min later');

  // Too long: the server's message names the key, and the form stays open.
  await row.locator('[data-testid=extend]').click();
  await minutes.fill('50000');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid=extend-error]', { hasText: 'duration_s' }).waitFor();
  await page.keyboard.press('Escape');
  await page.locator('[data-testid=extend-form]').waitFor({ state: 'detached' });
  await api({ cmd: 'release', id: held.id });
});

test('the Lab timeline shows reservations that ended', async () => {
  const held = await api({ cmd: 'hold', resource: 'stb-07', by: 'trent', duration_s: 600 });
  await api({ cmd: 'release', id: held.id });
  // The book writes its history behind the answer.
  for (let i = 0; i < 100 && !(await api({ cmd: 'reservation_history', hours: 1 })).some((p) => p.reservation.id === held.id); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.goto(`${server.origin}/#/lab`);
  const bar = page.locator(`[data-testid=timeline] [data-past="${held.id}"]`);
  await bar.waitFor();
  assert.equal(await bar.getAttribute('data-resource'), 'stb-07');
  assert.match(await bar.locator('title').textContent(), /trent/);
  assert.equal(await page.locator(`[data-testid=reservations] tr[data-reservation="${held.id}"]`).count(), 0, 'no longer in the live list');
  if (process.env.TESTBAY_BLESS) await screenshot(page, 'lab-timeline-past');
});
