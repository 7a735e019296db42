// A task asks the operator: the dialog shows on Live, a choice answers it, the task gets
// the answer (and who gave it) and passes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser, screenshot } from '../lib/harness.js';

let server;
let browser;
const packs = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-prompt-'));

after(async () => {
  await browser?.close();
  await server?.stop();
  if (server) rmSync(server.dataDir, { recursive: true, force: true });
  rmSync(packs, { recursive: true, force: true });
});

const TASK = `
import testbay
answer = testbay.prompt("Plug in the HDMI cable, then press done", choices=["done", "no cable"], timeout=120)
testbay.set_result("Passed" if answer == "done" else "Failed", "operator said " + answer)
`;


test('a prompt is answered from the Live dialog', async () => {
  ensureUiBuilt();
  const pack = path.join(packs, 'ask-operator');
  mkdirSync(path.join(pack, 'tasks'), { recursive: true });
  writeFileSync(path.join(pack, 'pack.yaml'), "name: ask-operator\nversion: '1'\ngroups:\n  g:\n    tests: [hdmi]\n");
  writeFileSync(path.join(pack, 'tasks/hdmi.yaml'), 'name: hdmi\nrun: [python3, hdmi.py]\n');
  writeFileSync(path.join(pack, 'tasks/hdmi.py'), TASK);
  server = await startServer({ packDirs: [packs] });
  browser = await startBrowser();
  const page = browser.page;
  page.setDefaultTimeout(20_000);
  const body = await server.post({ cmd: 'launch', pack: 'ask-operator', groups: [] });
  const runId = body.data?.run_id;
  assert.ok(runId, JSON.stringify(body));
  await page.goto(`${server.origin}/#/live/${runId}`);
  const dialog = page.locator('[data-testid=prompt-dialog]');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /Plug in the HDMI cable/);
  // The task's row says it waits for the operator, and so does the queue screen.
  await page.locator('[data-testid=task-table]').getByText(/waiting for the operator: Plug in the HDMI cable/).first().waitFor();
  await page.goto(`${server.origin}/#/queue`);
  const waits = page.locator('[data-testid=operator-waits]');
  await waits.waitFor();
  assert.match(await waits.textContent(), new RegExp(`${runId}.*hdmi is waiting for the operator: Plug in the HDMI cable`));
  await page.goto(`${server.origin}/#/live/${runId}`);
  await dialog.waitFor();
  await page.locator('[data-testid=prompt-by]').fill('ana');
  await screenshot(page, 'live-prompt');
  await dialog.getByRole('button', { name: 'done' }).click();
  await dialog.waitFor({ state: 'detached' });

  let run;
  for (let i = 0; i < 200; i++) {
    run = await server.post({ cmd: 'get_run', run_id: runId });
    if (run.data?.run?.status === 'completed') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const task = run.data.tasks[0];
  assert.equal(task.result, 'Passed', JSON.stringify(task));
  assert.equal(task.message, 'operator said done');
  assert.equal(task.metadata.prompts[0].answer.by, 'ana');
});
