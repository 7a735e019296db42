// Drive the real desktop app through tauri-driver and Debian's WebKitWebDriver with plain
// WebDriver HTTP calls (no driver or browser downloads). Needs an X display (Xvfb).
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';
/** The app window's title (src-tauri/tauri.conf.json), to find it on the X display. */
const WINDOW_TITLE = 'Testbay';

export function desktopBin() {
  if (process.env.TESTBAY_DESKTOP_BIN) return process.env.TESTBAY_DESKTOP_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  return path.join(target, 'debug', 'testbay-desktop');
}

function tauriDriverBin() {
  const local = path.join(homedir(), '.cargo/bin/tauri-driver');
  return existsSync(local) ? local : 'tauri-driver';
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value; throw with `what` after `timeout` ms. */
export async function waitFor(what, fn, timeout = 20_000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(150);
  }
}

/** The `testbay` binary (for tests that start a lab server). */
export function testbayBin() {
  if (process.env.TESTBAY_BIN) return process.env.TESTBAY_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  return path.join(target, 'debug', 'testbay');
}

/**
 * Start tauri-driver, then a WebDriver session that launches the app on a fresh data
 * directory with the demo packs and the demo lab. The app's config folder
 * (`XDG_CONFIG_HOME`) is fresh too and remembers `lab` as the lab to join ("local":
 * this computer, the first screen skipped); `lab: null` remembers nothing, so the app
 * opens on its first screen. `bin`: another build of the app (an installed one).
 */
export async function startApp({ env = {}, lab = 'local', bin = desktopBin() } = {}) {
  const app = bin;
  if (!existsSync(app)) throw new Error(`desktop app not found at ${app}; build it: cargo build -p testbay-desktop`);
  const dataDir = mkdtempSync(path.join(tmpdir(), 'testbay-desktop-'));
  const configDir = mkdtempSync(path.join(tmpdir(), 'testbay-desktop-config-'));
  if (lab) {
    mkdirSync(path.join(configDir, 'testbay'));
    writeFileSync(path.join(configDir, 'testbay/desktop.json'), JSON.stringify({ lab }));
  }
  const port = await freePort();
  const nativePort = await freePort();
  let output = '';
  const driver = spawn(
    tauriDriverBin(),
    ['--port', String(port), '--native-port', String(nativePort), '--native-driver', '/usr/bin/WebKitWebDriver'],
    {
      env: {
        ...process.env,
        TESTBAY_DATA_DIR: dataDir,
        TESTBAY_PACKS: path.join(ROOT, 'packs'),
        TESTBAY_LAB: path.join(ROOT, 'lab/demo-lab.yaml'),
        XDG_CONFIG_HOME: configDir,
        TESTBAY_SERVER: '',
        RUST_LOG: process.env.RUST_LOG ?? 'warn',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  driver.stdout.on('data', (b) => (output += b));
  driver.stderr.on('data', (b) => (output += b));
  const base = `http://127.0.0.1:${port}`;
  const wd = async (method, url, body) => {
    const res = await fetch(base + url, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(json.value ?? json).slice(0, 400)}`);
    return json.value;
  };
  try {
    await waitFor('tauri-driver', async () => (await fetch(`${base}/status`)).ok, 15_000);
  } catch (e) {
    driver.kill('SIGKILL');
    throw new Error(`${e.message}\n${output}`);
  }
  let session;
  try {
    session = await wd('POST', '/session', {
      capabilities: { alwaysMatch: { browserName: 'wry', 'tauri:options': { application: app } } },
    });
  } catch (e) {
    driver.kill('SIGKILL');
    throw new Error(`${e.message}\n${output}`);
  }
  const s = `/session/${session.sessionId}`;

  const page = {
    dataDir,
    configDir,
    log: () => output,
    exec: (script, args = []) => wd('POST', `${s}/execute/sync`, { script, args }),
    async find(css) {
      const el = await wd('POST', `${s}/element`, { using: 'css selector', value: css });
      const id = el?.[ELEMENT];
      if (!id) throw new Error(`no element id for ${css}: ${JSON.stringify(el)}`);
      return id;
    },
    async waitFor(css, timeout) {
      return waitFor(css, () => page.exec('return !!document.querySelector(arguments[0])', [css]), timeout);
    },
    async click(css) {
      await page.waitFor(css);
      await wd('POST', `${s}/element/${await page.find(css)}/click`, {});
    },
    async type(css, text) {
      await page.waitFor(css);
      const id = await page.find(css);
      await wd('POST', `${s}/element/${id}/clear`, {});
      await wd('POST', `${s}/element/${id}/value`, { text });
    },
    text: (css) => page.exec('return document.querySelector(arguments[0])?.textContent ?? null', [css]),
    /**
     * Save the app window as the X server shows it to NAME.png in test-output/screenshots
     * (docs/screenshots with TESTBAY_BLESS=1, to refresh the README's pictures).
     *
     * Not WebDriver's screenshot: WebKitWebDriver (WebKitGTK 2.50) takes it after the
     * page's next presentation update, and a page drawn without GPU compositing (how the
     * app runs, see src-tauri/src/main.rs) sends none while it is idle, so the command
     * never returns. The X grab also shows what the operator sees, not a re-render.
     */
    async screenshot(name) {
      const dir = path.join(ROOT, process.env.TESTBAY_BLESS ? 'docs/screenshots' : 'test-output/screenshots');
      mkdirSync(dir, { recursive: true });
      const script = path.join(ROOT, 'tests/desktop/xshot.py');
      await new Promise((resolve, reject) =>
        execFile('python3', [script, WINDOW_TITLE, path.join(dir, `${name}.png`)], (err, _out, stderr) =>
          err ? reject(new Error(`screenshot ${name}: ${stderr || err.message}`)) : resolve(),
        ),
      );
    },
    async close() {
      await wd('DELETE', s).catch(() => {});
      driver.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => {
          driver.kill('SIGKILL');
          r();
        }, 5000);
        driver.once('exit', () => {
          clearTimeout(t);
          r();
        });
      });
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(configDir, { recursive: true, force: true });
    },
  };
  return page;
}
