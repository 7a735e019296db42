// Device health against a real `testbay serve`: the console launches a DUT's due health
// check by itself at start; the check fails, the Lab rack view shows the DUT in bad
// health and launches on it are refused with `dut_bad` unless forced; an operator's
// restore brings it back.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser } from '../lib/harness.js';

let server;
let browser;
const dir = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-health-'));

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function writeFiles() {
  const pack = path.join(dir, 'packs/hc');
  mkdirSync(path.join(pack, 'tasks'), { recursive: true });
  writeFileSync(path.join(pack, 'pack.yaml'), 'name: hc\nversion: 1.0.0\ngroups:\n  basic:\n    tests: [ping]\n');
  writeFileSync(path.join(pack, 'tasks/ping.yaml'), 'name: ping\nrun: [bash, ping.sh]\nest_task_time: 1\n');
  writeFileSync(path.join(pack, 'tasks/ping.sh'), 'echo "no answer from the DUT"; exit 1\n');
  const lab = path.join(dir, 'lab.yaml');
  writeFileSync(
    lab,
    'name: lab\nracks:\n  - name: rack-a\n    slots: 2\nduts:\n  - name: stb-1\n    model: TP-4000\n    location: {rack: rack-a, slot: 1}\nhealth_checks:\n  - model: TP-4000\n    pack: hc\n    group: basic\n    interval: 3600\n',
  );
  return lab;
}

const api = (request) => server.post(request);

test('a failing health check makes a DUT bad; the rack shows it; launches are refused until restored', async () => {
  ensureUiBuilt();
  const lab = writeFiles();
  server = await startServer({ packDirs: [path.join(dir, 'packs')], lab });
  let report;
  for (let i = 0; i < 300; i++) {
    report = (await api({ cmd: 'dut_health', dut: 'stb-1' })).data;
    if (report?.health.health === 'bad') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(report.health.health, 'bad', JSON.stringify(report));
  assert.match(report.health.reason, /health check failed/);

  browser = await startBrowser();
  const page = browser.page;
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.setDefaultTimeout(20_000);
  await page.goto(`${server.origin}/#/lab`);
  await page.locator('[data-testid=racks] [data-dut=stb-1] [data-health=bad]').waitFor();

  const refused = await api({ cmd: 'launch', pack: 'hc', duts: ['stb-1'] });
  assert.equal(refused.error?.code, 'dut_bad', JSON.stringify(refused));
  const forced = await api({ cmd: 'launch', pack: 'hc', duts: ['stb-1'], force: true });
  assert.ok(forced.data?.run_id, JSON.stringify(forced));

  const restored = await api({ cmd: 'restore_dut', dut: 'stb-1', note: 'replaced the PSU' });
  assert.equal(restored.data?.health.health, 'good', JSON.stringify(restored));
  await page.reload();
  await page.locator('[data-testid=racks] [data-dut=stb-1]').waitFor();
  assert.equal(await page.locator('[data-testid=racks] [data-dut=stb-1] [data-health=bad]').count(), 0);
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});
