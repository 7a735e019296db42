// Logs and artifacts come down as files: in web mode through `/files/runs/...`, in desktop
// mode through the API's `read_file` and a Blob download. There is no Tauri shell here: the
// desktop case sets `window.__TAURI_INTERNALS__` to forward `invoke('dispatch')` to the real
// console's `/api`, so the UI takes its Tauri path against the real engine. How WebKitGTK
// saves a Blob download is not covered.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUiBuilt, startServer, startBrowser } from '../lib/harness.js';

let server;
let browser;
const packs = mkdtempSync(path.join(tmpdir(), 'testbay-e2e-packs-'));

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(packs, { recursive: true, force: true });
});

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff, 0x0a, 0x7f]);

function writePack() {
  const dir = path.join(packs, 'files');
  mkdirSync(path.join(dir, 'tasks'), { recursive: true });
  writeFileSync(path.join(dir, 'pack.yaml'), 'name: files\nversion: 1.0.0\ngroups:\n  smoke:\n    tests: [shoot]\n');
  writeFileSync(path.join(dir, 'tasks/shoot.yaml'), 'name: shoot\nrun: [bash, shoot.sh]\nest_task_time: 2\n');
  writeFileSync(
    path.join(dir, 'tasks/shoot.sh'),
    'mkdir -p "$TESTBAY_ARTIFACTS/shots"\nprintf \'\\x89PNG\\x00\\xff\\n\\x7f\' > "$TESTBAY_ARTIFACTS/shots/tv.png"\necho "frame grabbed"\n',
  );
}

const api = (request) => server.post(request);

/** Stand-in for the Tauri IPC: `dispatch` goes to the console's HTTP API, events never come. */
function fakeTauri() {
  let next = 1;
  window.__TAURI_INTERNALS__ = {
    transformCallback: () => next++,
    unregisterCallback: () => {},
    async invoke(cmd, args) {
      if (cmd === 'dispatch') {
        const res = await fetch('/api', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(args.request),
        });
        const body = await res.json();
        // The shell rejects with the ApiError itself; HTTP wraps it in `{error}`.
        if (body && body.error) throw body.error;
        return body;
      }
      // The shell's seat: joined to this computer, as once a lab is remembered.
      if (cmd === 'seat') {
        return {
          lab: { kind: 'local', name: 'this computer', url: null, user: null },
          remembered_url: null, token_file: '', token_in: null, error: null,
        };
      }
      if (cmd === 'plugin:event|listen') return next++;
      if (cmd === 'plugin:event|unlisten') return null;
      throw new Error(`no such command in this stand-in: ${cmd}`);
    },
  };
}

async function saved(page, click) {
  const [dl] = await Promise.all([page.waitForEvent('download'), click()]);
  return { name: dl.suggestedFilename(), bytes: readFileSync(await dl.path()) };
}

test('logs and artifacts download in web mode and through read_file in desktop mode', async () => {
  ensureUiBuilt();
  writePack();
  server = await startServer({ packDirs: [packs] });
  const launched = await api({ cmd: 'launch', pack: 'files' });
  const runId = launched.data?.run_id;
  assert.ok(runId, JSON.stringify(launched));
  let detail;
  for (let i = 0; i < 300; i++) {
    detail = (await api({ cmd: 'get_run', run_id: runId })).data;
    if (detail?.run.status === 'completed') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(detail.run.status, 'completed');
  assert.deepEqual(detail.tasks[0].artifacts.map((a) => a.path), ['shots/tv.png']);

  browser = await startBrowser();
  const pageErrors = [];

  // Web mode: plain links to the server's files.
  let page = browser.page;
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.setDefaultTimeout(20_000);
  await page.goto(`${server.origin}/#/results/${runId}`);
  await page.locator('[data-testid=task-tree] tr[data-task=shoot]').click();
  const link = page.locator('[data-testid=artifacts] a', { hasText: 'shots/tv.png' });
  const href = await link.getAttribute('href');
  assert.match(href, /^files\/runs\//);
  const served = Buffer.from(await (await fetch(new URL(href, server.url))).arrayBuffer());
  assert.deepEqual(served, PNG, 'web mode serves the artifact');
  const webLog = await saved(page, () => page.click('[data-testid=log-download]'));
  assert.equal(webLog.bytes.toString(), 'frame grabbed\n');

  // Desktop mode: no links to /files; the same clicks save what read_file answered.
  page = await browser.context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.setDefaultTimeout(20_000);
  await page.addInitScript(fakeTauri);
  await page.goto(`${server.origin}/#/results/${runId}`);
  await page.locator('[data-testid=task-tree] tr[data-task=shoot]').click();
  await page.locator('[data-testid=artifacts] button', { hasText: 'shots/tv.png' }).waitFor();
  assert.equal(await page.locator('a[href^="files/"]').count(), 0, 'no /files links in desktop mode');
  const art = await saved(page, () => page.click('[data-testid=artifacts] button:has-text("shots/tv.png")'));
  assert.equal(art.name, 'tv.png');
  assert.deepEqual(art.bytes, PNG, 'the artifact bytes survive base64 and the Blob');
  const log = await saved(page, () => page.click('[data-testid=log-download]'));
  assert.equal(log.bytes.toString(), 'frame grabbed\n');
  const junit = await saved(page, () => page.click('[data-testid=export-junit]'));
  assert.match(junit.bytes.toString(), /<testsuite/);

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});
