// The package's prepare script (npm install in a checkout, and npx, which installs a checkout
// into its cache as a link and prepares it again): compiles the TypeScript (tsc) and bundles
// mprun's command (dist/launcher/bundle.js), unless both are newer than every source already.
// --force: always.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = join(root, 'dist', 'mprun-cli.json'); // written last by the bundling

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules') t = Math.max(t, newest(p));
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) {
      t = Math.max(t, statSync(p).mtimeMs);
    }
  }
  return t;
}

function current() {
  if (!existsSync(stamp)) return false;
  const sources = ['core', 'runtime', 'transports', 'native', 'launcher', 'bench'].filter((d) => existsSync(join(root, d)));
  const latest = Math.max(statSync(join(root, 'tsconfig.json')).mtimeMs, ...sources.map((d) => newest(join(root, d))));
  return latest <= statSync(stamp).mtimeMs;
}

function run(args) {
  const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

if (!process.argv.includes('--force') && current()) process.exit(0);
if (!existsSync(join(root, 'tsconfig.json'))) process.exit(0); // an installed package: dist/ is what it ships
run([join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json']);
run([join(root, 'dist', 'launcher', 'bundle.js')]);
