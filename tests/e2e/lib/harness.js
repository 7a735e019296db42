// Starts a real `testbay serve` on an ephemeral port with a temp data dir, the demo lab and
// the demo packs plus the broken fixture pack, and Debian's chromium through playwright-core.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/**
 * Where screenshots go: `docs/screenshots` (the README's pictures) only with
 * TESTBAY_BLESS=1, else `test-output/screenshots` (ignored by git), so a test run leaves
 * the tree as it was.
 */
export const SCREENSHOTS = screenshotDir(ROOT);

export function screenshotDir(root) {
  return process.env.TESTBAY_BLESS ? path.join(root, 'docs/screenshots') : path.join(root, 'test-output/screenshots');
}

/** The testbay binary: $TESTBAY_BIN, else target/debug/testbay under $CARGO_TARGET_DIR or ./target. */
export function testbayBin() {
  if (process.env.TESTBAY_BIN) return process.env.TESTBAY_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  return path.join(target, 'debug', 'testbay');
}

/** Build ui/dist when it is missing (the server serves it). */
export function ensureUiBuilt() {
  if (existsSync(path.join(ROOT, 'ui/dist/index.html')) && !process.env.E2E_REBUILD_UI) return;
  const ui = path.join(ROOT, 'ui');
  if (!existsSync(path.join(ui, 'node_modules'))) run('npm', ['ci', '--no-audit', '--no-fund'], ui);
  run('npm', ['run', 'build'], ui);
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}`);
}

/**
 * Start `testbay serve`; resolves when it prints its listening address.
 * `packDirs` are pack library folders; extra args are appended.
 */
export async function startServer({ packDirs = ['packs', 'tests/fixtures/packs'], extraArgs = [], env = {}, port = 0, dataDir = null, host = '127.0.0.1', lab = path.join(ROOT, 'lab/demo-lab.yaml') } = {}) {
  const bin = testbayBin();
  if (!existsSync(bin)) throw new Error(`testbay binary not found at ${bin}; build it (cargo build -p testbay-cli) or set TESTBAY_BIN`);
  const ownData = !dataDir;
  dataDir ??= mkdtempSync(path.join(tmpdir(), 'testbay-e2e-'));
  // The shared test machine is often busy: queued runs must not wait on the dispatch
  // threshold (issue 12) unless a test says otherwise.
  const settings = path.join(dataDir, 'settings.yaml');
  if (!existsSync(settings)) writeFileSync(settings, 'dispatch_cpu_threshold: 100\n');
  const args = [
    'serve',
    '--bind', `${host}:${port}`,
    '--data-dir', dataDir,
    '--lab', lab,
    '--ui-dir', process.env.TESTBAY_UI_DIR || path.join(ROOT, 'ui/dist'),
    ...packDirs.flatMap((d) => ['--packs', path.isAbsolute(d) ? d : path.join(ROOT, d)]),
    ...extraArgs,
  ];
  const child = spawn(bin, args, {
    cwd: ROOT,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`testbay serve did not start in 30 s:\n${output}`)), 30_000);
    const onData = (buf) => {
      output += buf.toString();
      const m = output.match(/https?:\/\/[\d.]+:\d+[^\s]*/);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`testbay serve exited with ${code}:\n${output}`));
    });
  });
  child.stdout.on('data', (b) => process.env.E2E_VERBOSE && process.stderr.write(b));
  child.stderr.on('data', (b) => process.env.E2E_VERBOSE && process.stderr.write(b));
  // Browse through loopback even when bound to every interface.
  const u = new URL(url);
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1';
  url = u.toString();
  const origin = u.origin;
  return {
    url,
    origin,
    port: Number(new URL(url).port),
    dataDir,
    /** `POST /api` with one request; the whole answer (`{cmd, data}` or `{error}`). */
    async post(request) {
      const res = await fetch(`${origin}/api`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request),
      });
      return res.json();
    },
    /** `POST /api` with one request; its `data`, or an Error naming the command. */
    async api(request) {
      const body = await this.post(request);
      if (body.error) throw new Error(`${request.cmd}: ${body.error.message}`);
      return body.data;
    },
    /** Stop and start again on the same port and data directory. */
    async restart() {
      await this.stop({ keepData: true });
      return startServer({ packDirs, extraArgs, env, port: this.port, dataDir, host });
    },
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => {
          const t = setTimeout(() => {
            child.kill('SIGKILL');
            r();
          }, 5000);
          child.once('exit', () => {
            clearTimeout(t);
            r();
          });
        });
      }
      if (ownData && !keepData) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's chromium with a fresh user-data-dir. */
export async function startBrowser({ width = 1440, height = 900 } = {}) {
  const userDataDir = mkdtempSync(path.join(tmpdir(), 'testbay-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width, height },
  });
  return {
    context,
    page: context.pages()[0] ?? (await context.newPage()),
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}
