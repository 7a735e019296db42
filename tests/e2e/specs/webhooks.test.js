// Webhooks from the UI against a real `testbay serve` and a real local receiver that fails
// the first try; and a task that passed only on its retry, shown flaky in Results.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser } from '../lib/harness.js';

let server;
let browser;
let receiver;
const packs = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-packs-'));

after(async () => {
  await browser?.close();
  await server?.stop();
  receiver?.close();
  rmSync(packs, { recursive: true, force: true });
});

function writePack() {
  const dir = path.join(packs, 'wobbly');
  mkdirSync(path.join(dir, 'tasks'), { recursive: true });
  writeFileSync(path.join(dir, 'pack.yaml'), 'name: wobbly\nversion: 1.0.0\ngroups:\n  smoke:\n    tests: [shaky]\n');
  writeFileSync(path.join(dir, 'tasks/shaky.yaml'), 'name: shaky\nrun: [bash, shaky.sh]\nest_task_time: 1\nmax_retries: 2\n');
  const marker = path.join(packs, 'shaky.marker');
  writeFileSync(path.join(dir, 'tasks/shaky.sh'), `if [ -e '${marker}' ]; then echo fine; exit 0; fi\ntouch '${marker}'\necho glitch; exit 1\n`);
}

/** A receiver answering 500 to the first request and 200 after; every body and header kept. */
async function startReceiver() {
  const got = [];
  receiver = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.statusCode = got.length === 1 ? 500 : 200;
      res.end(got.length === 1 ? 'busy' : 'ok');
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${receiver.address().port}/hook`, got };
}

const api = (request) => server.post(request);

test('a webhook added in the UI gets a run end after a retry; a retried task shows flaky', async () => {
  ensureUiBuilt();
  writePack();
  const { url, got } = await startReceiver();
  server = await startServer({ packDirs: [packs] });
  browser = await startBrowser();
  const page = browser.page;
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.setDefaultTimeout(20_000);

  await page.goto(`${server.origin}/#/webhooks`);
  await page.fill('[data-testid=webhook-url]', 'https://example.com/hook');
  await page.check('input[data-event=run_finished]');
  await page.click('[data-testid=webhook-add]');
  const err = await page.locator('[data-testid=webhook-error]').textContent();
  assert.match(err, /^url:/, 'the error names the field');

  await page.fill('[data-testid=webhook-url]', url);
  await page.fill('[data-testid=webhook-secret]', 'e2e-secret');
  await page.click('[data-testid=webhook-add]');
  await page.locator('[data-testid=webhooks] tr[data-webhook]').waitFor();
  assert.equal(await page.locator('[data-testid=webhook-error]').count(), 0);

  const launched = await api({ cmd: 'launch', pack: 'wobbly' });
  const runId = launched.data?.run_id;
  assert.ok(runId, JSON.stringify(launched));

  // The panel shows the delivery, delivered on its second try.
  await page.locator('[data-testid=deliveries] .pill', { hasText: 'delivered' }).first().waitFor();
  const rows = await page.locator('[data-testid=deliveries] tr[data-delivery]').allTextContents();
  assert.ok(rows.some((r) => /run_finished/.test(r) && /HTTP 200/.test(r)), rows.join('\n'));
  assert.ok(got.length >= 2, `the receiver got the first try and the retry (${got.length})`);
  const last = got[got.length - 1];
  const expected = 'sha256=' + createHmac('sha256', 'e2e-secret').update(last.body).digest('hex');
  assert.equal(last.headers['x-testbay-signature'], expected);
  assert.equal(JSON.parse(last.body).data.run.id, runId);

  // Results: the retried task passed, marked flaky.
  await page.goto(`${server.origin}/#/results/${runId}`);
  const row = page.locator('[data-testid=task-tree] tr[data-task=shaky]');
  await row.locator('[data-flaky]').waitFor();
  assert.match(await row.textContent(), /Passed/);

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});
