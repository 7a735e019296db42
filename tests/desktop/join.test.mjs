// The desktop app joins a lab server from its first screen: a real `testbay serve` with a
// token and a finished run; a wrong token is refused with a clear error, the right one
// joins, the side bar names the server and Results lists the server's run; the choice is
// remembered in the config folder, the token in the OS keyring or a file only its owner
// can read.
// Run: xvfb-run -a node --test tests/desktop/ (TESTBAY_BIN: the testbay binary)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, startApp, testbayBin, waitFor } from './webdriver.mjs';

const TOKEN = 'desk-join-token-7';
let server;
let app;
let serverDir;
let runId;
let port;

before(async () => {
  serverDir = mkdtempSync(path.join(tmpdir(), 'testbay-lab-server-'));
  const env = {
    ...process.env,
    TESTBAY_DATA_DIR: serverDir,
    TESTBAY_PACKS: path.join(ROOT, 'packs'),
    TESTBAY_LAB: path.join(ROOT, 'lab/demo-lab.yaml'),
    TESTBAY_SERVER: '',
    TESTBAY_TOKEN: '',
  };
  // A finished run on the server's data dir, then the server on it.
  // (The demo pack's smoke group has a test that fails on purpose: exit 1 is a verdict.)
  const run = spawnSync(testbayBin(), ['run', 'stb-smoke', '--group', 'smoke', '--dut', 'stb-01', '-p', 'slow_seconds=0'], {
    env,
    encoding: 'utf8',
  });
  const out = run.stdout ?? '';
  assert.ok([0, 1].includes(run.status), `testbay run exited ${run.status}:\n${out}\n${run.stderr}`);
  runId = /details: testbay results (\S+)/.exec(out)?.[1];
  assert.ok(runId, `no run id in:\n${out}`);
  server = spawn(testbayBin(), ['serve', '--bind', '0.0.0.0:0', '--token', TOKEN], { env, stdio: ['ignore', 'pipe', 'ignore'] });
  let printed = '';
  server.stdout.on('data', (b) => (printed += b));
  port = await waitFor('the server address', () => /console at http:\/\/0\.0\.0\.0:(\d+)/.exec(printed)?.[1], 30_000);
  app = await startApp({ lab: null });
});

after(async () => {
  await app?.close();
  server?.kill('SIGTERM');
  rmSync(serverDir, { recursive: true, force: true });
});

test('the first screen joins a lab server and the app shows its runs', { timeout: 240_000 }, async () => {
  await app.waitFor('[data-testid=choose-lab]', 30_000);
  await app.screenshot('desktop-choose-lab');
  const url = `http://127.0.0.1:${port}`;

  // A wrong token: refused, said so, still on the first screen.
  await app.type('[data-testid=server-url]', url);
  await app.type('[data-testid=server-token]', 'not-the-token');
  await app.click('[data-testid=join-server]');
  const error = await waitFor('the join error', () => app.text('[data-testid=join-error]'));
  assert.match(error, /401/, error);
  assert.match(error, /refused the token/, error);
  assert.ok(await app.exec("return !!document.querySelector('[data-testid=choose-lab]')"));

  // The right one joins; the side bar names the server.
  await app.type('[data-testid=server-token]', TOKEN);
  await app.click('[data-testid=join-server]');
  const lab = await waitFor('the lab in the side bar', () => app.text('[data-testid=lab-name]'));
  assert.match(lab, new RegExp(`127\\.0\\.0\\.1:${port}`), lab);

  // Results are the server's.
  await app.exec("location.hash = '#/results'");
  await app.waitFor(`[data-testid=results-table] tr[data-run="${runId}"]`, 30_000);
  await app.screenshot('desktop-joined-lab');

  // Remembered for next time: the address in the config folder, the token beside it, private.
  const remembered = JSON.parse(readFileSync(path.join(app.configDir, 'testbay/desktop.json'), 'utf8'));
  assert.deepEqual(remembered, { lab: 'server', url: `${url}/` });
  // Without an OS keyring (none answers under Xvfb here) the token is in a private file,
  // and the side bar says so.
  const place = await app.text('[data-testid=token-place]');
  const tokenFile = path.join(app.configDir, 'testbay/desktop.token');
  if (/private file/.test(place)) {
    assert.equal(readFileSync(tokenFile, 'utf8'), TOKEN);
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
  } else {
    assert.match(place, /keyring/, place);
    assert.ok(!existsSync(tokenFile), 'a token in the keyring is not also in a file');
  }

  // Switching goes back to the first screen, the server's address filled in.
  await app.click('[data-testid=switch-lab]');
  await app.waitFor('[data-testid=choose-lab]');
  assert.equal(await app.exec("return document.querySelector('[data-testid=server-url]').value"), `${url}/`);
  await app.click('[data-testid=join-local]');
  await waitFor('this computer in the side bar', async () => (await app.text('[data-testid=lab-name]'))?.includes('this computer'));
});
