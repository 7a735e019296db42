// The lab's pack library on the Packs screen: a pack an operator pushed private (through
// `testbay --server URL --token T packs push --private`) is listed beside the packs on
// disk, marked library, its owner and private; a viewer does not see it; its owner
// publishes it with the Publish button, and then everyone does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser, testbayBin, screenshot } from '../lib/harness.js';

let server;
let browser;
const dataDir = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-library-'));
const packDir = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-library-pack-'));

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(packDir, { recursive: true, force: true });
});

function testbay(args) {
  const r = spawnSync(testbayBin(), args, { encoding: 'utf8', env: { ...process.env, TESTBAY_SERVER: '', TESTBAY_TOKEN: '' } });
  assert.equal(r.status, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

function addUser(name, role) {
  return JSON.parse(testbay(['users', 'add', name, '--role', role, '--json', '--data-dir', dataDir])).token;
}

async function apiAs(token, request) {
  const res = await fetch(`${server.origin}/api`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(request),
  });
  return res.json();
}

const pushedBy = async (token) =>
  (await apiAs(token, { cmd: 'list_packs' })).data.filter((p) => p.library).map((p) => `${p.library.reference} ${p.library.owner} ${p.library.private}`);

test('a pushed private pack is listed with its origin and published by its owner', async () => {
  ensureUiBuilt();
  const vera = addUser('vera', 'viewer');
  const otto = addUser('otto', 'operator');
  server = await startServer({ dataDir });

  mkdirSync(path.join(packDir, 'tasks'), { recursive: true });
  writeFileSync(path.join(packDir, 'pack.yaml'), "name: lib-smoke\nversion: '0.3'\ndescription: pushed from a desk\ngroups:\n  main:\n    tests: [hello]\n");
  writeFileSync(path.join(packDir, 'tasks/hello.yaml'), 'name: hello\nrun: [bash, hello.sh]\n');
  writeFileSync(path.join(packDir, 'tasks/hello.sh'), 'echo hello\n');
  const out = testbay(['--server', server.origin, '--token', otto, 'packs', 'push', '--private', packDir]);
  assert.match(out, /pushed lib-smoke 0\.3 \(private/);
  assert.deepEqual(await pushedBy(otto), ['lib-smoke@0.3 otto true']);
  assert.deepEqual(await pushedBy(vera), [], 'a viewer does not see a private pack');

  browser = await startBrowser();
  const page = browser.page;
  page.setDefaultTimeout(20_000);
  let step = 'sign in';
  try {
    await page.goto(`${server.origin}/`);
    await page.waitForURL(/\/signin$/);
    await page.fill('input[name=token]', otto);
    await page.click('button[type=submit]');
    await page.locator('[data-testid=me]', { hasText: 'otto' }).waitFor();

    step = 'the list';
    await page.goto(`${server.origin}/#/packs`);
    const row = page.locator('[data-testid=packs-table] tr[data-pack="lib-smoke@0.3"]');
    await row.waitFor();
    assert.equal(await row.getAttribute('data-origin'), 'library');
    assert.match(await row.locator('[data-testid=pack-origin]').textContent(), /library · otto\s*private/);
    const disk = page.locator('[data-testid=packs-table] tr[data-pack="stb-smoke"]');
    assert.equal(await disk.getAttribute('data-origin'), 'disk');
    assert.match(await disk.locator('[data-testid=pack-origin]').textContent(), /disk/);

    step = 'publish';
    await row.click();
    const detail = page.locator('[data-testid=pack-detail]');
    await detail.locator('[data-testid=pack-library]', { hasText: 'seen only by otto and admins' }).waitFor();
    await screenshot(page, 'packs-library-private');
    await detail.locator('button', { hasText: 'Publish' }).click();
    await detail.locator('[data-testid=pack-library]', { hasText: 'public' }).waitFor();
    await row.locator('[data-testid=pack-origin]').filter({ hasNotText: 'private' }).waitFor();
    assert.equal(await detail.locator('button', { hasText: 'Publish' }).count(), 0, 'nothing left to publish');
    assert.deepEqual(await pushedBy(vera), ['lib-smoke@0.3 otto false'], 'everyone sees it now');
    await screenshot(page, 'packs-library-published');
  } catch (e) {
    await screenshot(page, `packs-library-failed-${step.replace(/\W+/g, '-')}`).catch(() => {});
    throw new Error(`step "${step}": ${e.message}`);
  }
});
