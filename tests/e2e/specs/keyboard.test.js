// Keyboard and contrast: pack rows, Results rows and sortable headers, the Live run list
// take focus and open with Enter; the focus ring is at least 3:1 against the page, faint
// text and pills at least 4.5:1; Results filters have labels and its search finds runs by
// DUT name; Esc closes a dialog.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser } from '../lib/harness.js';

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

/** Contrast ratio of two CSS colours (rgb()/rgba(), alpha ignored), WCAG 2. */
function contrast(a, b) {
  const lum = (c) => {
    const [r, g, bl] = c.match(/\d+(\.\d+)?/g).slice(0, 3).map((v) => {
      const s = Number(v) / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

/** Focus `selector` the way Tab would reach it, and say whether it took the focus. */
async function focus(selector) {
  await page.locator(selector).first().focus();
  return page.evaluate((sel) => document.activeElement === document.querySelector(sel), selector);
}

test('every row and header works from the keyboard; text and rings are readable', async () => {
  let step = 'packs';
  try {
    const { run_id: runId } = await api({ cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], duts: ['stb-03'], params: { slow_seconds: 1 } });
    await page.goto(`${server.origin}/#/packs`);
    const packRow = '[data-testid=packs-table] tr[data-pack="stb-smoke"]';
    await page.locator(packRow).waitFor();
    assert.ok(await focus(packRow), 'a pack row takes focus');
    const ring = await page.evaluate((sel) => {
      const s = getComputedStyle(document.querySelector(sel));
      return { style: s.outlineStyle, width: parseFloat(s.outlineWidth), color: s.outlineColor };
    }, packRow);
    assert.notEqual(ring.style, 'none');
    assert.ok(ring.width >= 2);
    assert.ok(contrast(ring.color, 'rgb(255,255,255)') >= 3, `focus ring ${ring.color}`);
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/packs\/stb-smoke$/);

    step = 'contrast';
    const colours = await page.evaluate(() => {
      const probe = (cls) => {
        const el = document.createElement('span');
        el.className = cls;
        el.textContent = 'x';
        document.body.appendChild(el);
        const s = getComputedStyle(el);
        const out = { color: s.color, bg: s.backgroundColor };
        el.remove();
        return out;
      };
      return { faint: probe('faint'), muted: probe('muted'), ok: probe('pill ok'), bad: probe('pill bad'), warn: probe('pill warn'), info: probe('pill info'), run: probe('pill run'), idle: probe('pill') };
    });
    assert.ok(contrast(colours.faint.color, 'rgb(255,255,255)') >= 4.5, `faint ${colours.faint.color}`);
    assert.ok(contrast(colours.muted.color, 'rgb(244,245,247)') >= 4.5, `muted ${colours.muted.color}`);
    for (const k of ['ok', 'bad', 'warn', 'info', 'run', 'idle']) {
      assert.ok(contrast(colours[k].color, colours[k].bg) >= 4.5, `pill ${k}: ${colours[k].color} on ${colours[k].bg}`);
    }

    step = 'results';
    for (;;) {
      if ((await api({ cmd: 'get_run', run_id: runId, limit: 1 })).run.verdict) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await page.goto(`${server.origin}/#/results`);
    // Filters have labels; the search finds a run by its DUT's name.
    await page.getByLabel('DUT').waitFor();
    await page.getByLabel('Search').fill('stb-03');
    const row = `[data-testid=results-table] tr[data-run="${runId}"]`;
    await page.locator(row).waitFor();
    await page.getByLabel('Search').fill('');
    const header = '[data-testid=results-table] th.sortable:nth-child(2)';
    assert.ok(await focus(header), 'a sortable header takes focus');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=results-table] th.sortable', { hasText: 'Pack ▴' }).waitFor();
    assert.ok(await focus(row), 'a Results row takes focus');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=detail-run-id]', { hasText: runId }).waitFor();

    step = 'live run list';
    const long = { cmd: 'launch', pack: 'stb-smoke', groups: ['smoke'], params: { slow_seconds: 120 } };
    const { run_id: a } = await api({ ...long, duts: ['stb-04'] });
    const { run_id: b } = await api({ ...long, duts: ['stb-07'] });
    await page.goto(`${server.origin}/#/live/${encodeURIComponent(a)}`);
    const liveRow = `[data-testid=live-runs] tr[data-run="${b}"]`;
    await page.locator(liveRow).waitFor();
    assert.ok(await focus(liveRow), 'a Live run row takes focus');
    await page.keyboard.press('Enter');
    await page.waitForURL(new RegExp(`#/live/${b}$`));
    for (const id of [a, b]) for (let i = 0; i < 2; i++) await api({ cmd: 'stop_run', run_id: id }).catch(() => {});

    step = 'Esc closes a dialog';
    await page.goto(`${server.origin}/#/lab`);
    await api({ cmd: 'hold', resource: 'stb-05', by: 'kbd', duration_s: 600 });
    const release = page.locator('[data-testid=reservations] tr[data-holder="kbd"] [data-testid=release]');
    await release.click();
    await page.locator('[data-testid=confirm]').waitFor();
    await page.keyboard.press('Escape');
    await page.locator('[data-testid=confirm]').waitFor({ state: 'hidden' });
    await page.locator('[data-testid=reservations] tr[data-holder="kbd"]').waitFor();

    step = 'Tab reaches the launch form before Launch';
    await page.goto(`${server.origin}/#/launch`);
    await page.locator('[data-testid=pack-select]').waitFor();
    const formFirst = await page.evaluate(() => {
      const pack = document.querySelector('[data-testid=pack-select]');
      const launch = document.querySelector('[data-testid=launch]');
      return Boolean(pack.compareDocumentPosition(launch) & Node.DOCUMENT_POSITION_FOLLOWING);
    });
    assert.ok(formFirst, 'the pack field comes before Launch in the tab order');
    const barTop = await page.locator('[data-testid=launch]').boundingBox();
    const packTop = await page.locator('[data-testid=pack-select]').boundingBox();
    assert.ok(barTop.y < packTop.y, 'Launch still shows above the form');
  } catch (e) {
    const shot = path.join(tmpdir(), `testbay-e2e-failure-${Date.now()}.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    e.message = `at step "${step}" (page ${page.url()}, screenshot ${shot}): ${e.message}`;
    throw e;
  }
});
