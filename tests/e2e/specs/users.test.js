// A lab's console (users in the store): the page sends a visitor to the sign-in form, the
// signed-in user and role show in the side bar, a viewer's launch is refused saying which
// role it needs, and the Audit screen lists who did what, sortable and filterable from the
// keyboard.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser, testbayBin, screenshot } from '../lib/harness.js';

let server;
let browser;
const dataDir = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-users-'));

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** `testbay users add NAME --role ROLE --json` on the data dir: the new user's token. */
function addUser(name, role) {
  const r = spawnSync(testbayBin(), ['users', 'add', name, '--role', role, '--json', '--data-dir', dataDir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout).token;
}

async function apiAs(token, request) {
  const res = await fetch(`${server.origin}/api`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(request),
  });
  return { status: res.status, body: await res.json() };
}

test('sign in, a viewer refused a launch, the audit log of who did what', async () => {
  ensureUiBuilt();
  const vera = addUser('vera', 'viewer');
  const otto = addUser('otto', 'operator');
  server = await startServer({ dataDir });

  // The operator holds a DUT and releases it over the API: two audit entries.
  const held = await apiAs(otto, { cmd: 'hold', resource: 'stb-03', by: 'ignored', duration_s: 600 });
  assert.equal(held.status, 200, JSON.stringify(held.body));
  assert.equal(held.body.data.holder.name, 'otto', 'the hold is recorded under the user');
  const released = await apiAs(otto, { cmd: 'release', id: held.body.data.id });
  assert.equal(released.status, 200);
  const refused = await apiAs(vera, { cmd: 'hold', resource: 'stb-03', by: 'vera', duration_s: 60 });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, 'forbidden');

  browser = await startBrowser();
  const page = browser.page;
  page.setDefaultTimeout(20_000);
  let step = 'sign in';
  try {
    await page.goto(`${server.origin}/`);
    await page.waitForURL(/\/signin$/);
    await page.fill('input[name=token]', 'not-a-real-token');
    await page.click('button[type=submit]');
    await page.locator('[role=alert]', { hasText: 'Unknown or revoked token' }).waitFor();
    await page.fill('input[name=token]', vera);
    await page.click('button[type=submit]');
    await page.locator('[data-testid=me]', { hasText: 'vera' }).waitFor();
    assert.equal(await page.locator('[data-testid=me-role]').textContent(), 'viewer');
    await page.locator('.conn', { hasText: 'live' }).waitFor();

    step = 'a viewer launches';
    await page.goto(`${server.origin}/#/launch?pack=stb-smoke`);
    await page.waitForFunction(() => document.querySelector('[data-testid=pack-select]')?.value === 'stb-smoke');
    await page.locator('[data-testid=dut-table] tr[data-dut="stb-01"] input[type=checkbox]').check();
    await page.click('[data-testid=launch]');
    const error = page.locator('[data-testid=launch-error]');
    await error.filter({ hasText: 'needs the operator role' }).waitFor();
    assert.match(await error.textContent(), /vera is a viewer/);
    await screenshot(page, 'users-viewer-launch-refused');

    step = 'the audit screen';
    await page.click('[data-nav=audit]');
    const rows = page.locator('[data-testid=audit] tbody tr');
    await rows.first().waitFor();
    const actions = () => rows.evaluateAll((trs) => trs.map((tr) => [tr.children[1].textContent, tr.children[2].textContent]));
    // The users added on the command line (as `local`), the hold and the release; reads
    // and refusals change nothing and are not listed.
    assert.deepEqual(
      await actions(),
      [['otto', 'release'], ['otto', 'hold'], ['local', 'add_user'], ['local', 'add_user']],
      'newest first',
    );

    step = 'sort from the keyboard';
    const byAction = page.locator('[data-testid=audit] th[data-sort=action]');
    await byAction.focus();
    await page.keyboard.press('Enter');
    assert.deepEqual((await actions()).map(([, a]) => a), ['add_user', 'add_user', 'hold', 'release']);

    step = 'filter';
    await page.fill('[data-testid=audit-filter]', 'stb-03');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=audit] tbody tr').length === 1);
    assert.deepEqual(await actions(), [['otto', 'hold']]);
    await screenshot(page, 'users-audit');
  } catch (e) {
    await screenshot(page, `users-failed-${step.replace(/\W+/g, '-')}`).catch(() => {});
    throw new Error(`step "${step}": ${e.message}`);
  }
});
