// Rack agents in the rack view: a lab server with rack-a served by an agent, a real
// `testbay agent` connected to it; the Lab screen shows the agent on its rack (host,
// version, heartbeat age, CPU, what it runs), an operator drains it from the keyboard and
// sees it draining, then takes it back. A run on it shows in the agent's card; the agent
// SIGKILLed, Live shows the run and its lane stalled, naming the agent.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, ensureUiBuilt, startServer, startBrowser, testbayBin, screenshot } from '../lib/harness.js';

let server;
let browser;
let agent;
const dataDir = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-agents-'));

after(async () => {
  await browser?.close();
  if (agent && agent.exitCode === null) agent.kill('SIGKILL');
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
  return res.json();
}

test('the rack view shows the rack agent; an operator drains and undrains it', async () => {
  ensureUiBuilt();
  // The demo lab with rack-a served by an agent.
  const demo = readFileSync(path.join(ROOT, 'lab/demo-lab.yaml'), 'utf8');
  const entry = '    description: Set-top box rack, bench 1\n    slots: 8\n';
  assert.ok(demo.includes(entry), "the demo lab's rack-a entry changed; adapt this test");
  const lab = path.join(dataDir, 'lab.yaml');
  writeFileSync(lab, demo.replace(entry, `${entry}    agent: true\n`));
  writeFileSync(path.join(dataDir, 'settings.yaml'), 'dispatch_cpu_threshold: 100\nagent_heartbeat_ms: 500\nagent_cpu_threshold_pct: 100\n');
  // A pack whose one task takes a minute.
  const slow = path.join(dataDir, 'packs/slow');
  mkdirSync(path.join(slow, 'tasks'), { recursive: true });
  writeFileSync(path.join(slow, 'pack.yaml'), "name: slow\nversion: '1'\ngroups:\n  g:\n    tests: [probe]\n");
  writeFileSync(path.join(slow, 'tasks/probe.yaml'), 'name: probe\nrun: [bash, probe.sh]\n');
  writeFileSync(path.join(slow, 'tasks/probe.sh'), 'exec sleep 60\n');
  const otto = addUser('otto', 'operator');
  const ctl = addUser('rack-a-ctl', 'agent');
  server = await startServer({ dataDir, lab, packDirs: ['packs', path.join(dataDir, 'packs')] });
  agent = spawn(
    testbayBin(),
    ['agent', '--server', server.origin, '--token', ctl, '--rack', 'rack-a', '--work-dir', path.join(dataDir, 'agent-work')],
    { env: { ...process.env, RUST_LOG: 'warn' }, stdio: 'ignore' },
  );

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

    step = 'the agent on its rack';
    await page.click('[data-nav=lab]');
    const card = page.locator('[data-rack="rack-a"] [data-agent="rack-a-ctl"]');
    await card.and(page.locator('[data-state=ok]')).waitFor();
    assert.equal(await page.locator('[data-rack="rack-b"] [data-agent]').count(), 0, 'rack-b has no agent');
    assert.match(await card.textContent(), /· \d+\.\d+\.\d+/, 'host · version');
    assert.match(await card.locator('[data-testid=agent-heard]').textContent(), /heard (just now|\d+ s ago)/);
    assert.match(await card.locator('[data-testid=agent-cpu]').textContent(), /CPU (\d+%|-)/);
    assert.equal(await card.locator('[data-testid=agent-running]').textContent(), 'idle');
    await screenshot(page, 'agents-rack-view');

    step = 'drain from the keyboard';
    const button = card.locator('[data-testid=agent-drain]');
    assert.equal(await button.textContent(), 'Drain');
    await button.focus();
    await page.keyboard.press('Enter');
    await card.and(page.locator('[data-state=draining]')).waitFor();
    assert.equal(await button.textContent(), 'Undrain');
    const listed = await apiAs(otto, { cmd: 'agents' });
    assert.equal(listed.data[0].draining, true, JSON.stringify(listed));
    await screenshot(page, 'agents-drained');

    step = 'undrain';
    await button.focus();
    await page.keyboard.press('Enter');
    await card.and(page.locator('[data-state=ok]')).waitFor();
    assert.equal((await apiAs(otto, { cmd: 'agents' })).data[0].draining, false);

    step = 'what it runs';
    const launched = await apiAs(otto, { cmd: 'launch', pack: 'slow', duts: ['stb-01'] });
    const runId = launched.data?.run_id;
    assert.ok(runId, JSON.stringify(launched));
    await card.locator('[data-testid=agent-running]', { hasText: `${runId}/stb-01 probe (main)` }).waitFor();

    step = 'the agent killed: Live shows the run and its lane stalled';
    agent.kill('SIGKILL');
    await page.goto(`${server.origin}/#/live/${runId}`);
    await page.locator('[data-testid=run-status]', { hasText: 'stalled' }).waitFor();
    assert.match(await page.locator('[data-testid=run-reason]').textContent(), /agent rack-a-ctl/);
    const lane = page.locator('[data-testid=lanes] tr', { hasText: 'stb-01' }).locator('[data-testid=lane-stalled]');
    await lane.waitFor();
    assert.equal(await lane.getAttribute('title'), 'agent rack-a-ctl is stalled');
    await screenshot(page, 'agents-live-stalled');
  } catch (e) {
    await screenshot(page, `agents-failed-${step.replace(/\W+/g, '-')}`).catch(() => {});
    throw new Error(`step "${step}": ${e.message}`);
  }
});
