// The Debian package `scripts/package` builds: installed with dpkg (as root), its files
// in place (binary, desktop entry, icons, declared dependencies), and the installed app
// started under Xvfb shows the demo packs. Removed again at the end.
// Run: xvfb-run -a node --test tests/desktop/ (TESTBAY_DEB: the .deb; default the newest
// one scripts/package built under $CARGO_TARGET_DIR)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ROOT, startApp } from './webdriver.mjs';

const INSTALLED = '/usr/bin/testbay-desktop';

function debPath() {
  if (process.env.TESTBAY_DEB) return process.env.TESTBAY_DEB;
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  const debs = ['debug', 'release']
    .map((p) => path.join(target, p, 'bundle/deb'))
    .filter((d) => existsSync(d))
    .flatMap((d) => readdirSync(d).filter((f) => f.endsWith('.deb')).map((f) => path.join(d, f)));
  debs.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return debs[0] ?? null;
}

const root = process.getuid?.() === 0;
const skip = root ? false : 'installing a package needs root (dpkg -i); run the desktop tests as root to include this one';
let app;
let installed = false;

after(async () => {
  await app?.close();
  if (installed) execFileSync('dpkg', ['-r', 'testbay'], { stdio: 'ignore' });
});

test('the Debian package installs and the installed app starts', { skip, timeout: 240_000 }, async () => {
  const deb = debPath();
  assert.ok(deb && existsSync(deb), `no .deb found (${deb ?? 'none'}): build it with scripts/package or set TESTBAY_DEB`);
  const info = execFileSync('dpkg-deb', ['--field', deb, 'Package', 'Depends'], { encoding: 'utf8' });
  assert.match(info, /^Package: testbay$/m, info);
  for (const dep of ['libwebkit2gtk-4.1-0', 'libgtk-3-0']) assert.match(info, new RegExp(dep.replace(/\./g, '\\.')), info);

  execFileSync('dpkg', ['-i', deb], { stdio: 'pipe' });
  installed = true;
  assert.ok(existsSync(INSTALLED), `${INSTALLED} installed`);
  const entry = readFileSync('/usr/share/applications/Testbay.desktop', 'utf8');
  assert.match(entry, /^Exec=testbay-desktop/m, entry);
  assert.match(entry, /^Icon=testbay-desktop/m, entry);
  assert.ok(existsSync('/usr/share/icons/hicolor/128x128/apps/testbay-desktop.png'), 'icon installed');

  // The installed binary, not the build tree's: it opens on this computer's console.
  app = await startApp({ bin: INSTALLED });
  await app.waitFor('[data-testid=packs-table] tr[data-pack="stb-smoke"]', 60_000);
  await app.waitFor('[data-testid=lab-name]');
  assert.match(await app.text('[data-testid=lab-name]'), /this computer/);
});
