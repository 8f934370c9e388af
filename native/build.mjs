// `npm install` runs this (the package's install script). It builds the native addon only
// when no usable one is there (prebuildify's convention, as node-gyp-build reads it):
//   1. prebuilds/<platform>-<arch>/mprun_native.node, shipped in the package (`npm run prebuild`
//      makes it; `npm pack` includes it): used when it loads and no native source is newer, so
//      that a project that installs mprun needs no compiler (and a checkout whose sources
//      changed since its prebuild builds them);
//   2. build/Release/mprun_native.node newer than every native source and binding.gyp, and
//      loading: left as it is (npx installs a checkout into its cache as a link and runs this
//      again: it must not rebuild what is current);
//   3. else node-gyp rebuild, after checking for what node-gyp needs (saying what is missing
//      instead of node-gyp's stack trace).
// Flags: --force (always build from source), --prebuild (build if needed, then copy the
// result to prebuilds/<platform>-<arch>/), --check (print what would be done, build nothing).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const tag = `${process.platform}-${process.arch}`;
const prebuilt = join(root, 'prebuilds', tag, 'mprun_native.node');
const release = join(root, 'build', 'Release', 'mprun_native.node');

/** Whether Node can load the addon at `path` (in a child: a broken addon must not take this process down). */
function loads(path) {
  if (!existsSync(path)) return false;
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path)})`], { stdio: 'ignore' });
  return r.status === 0;
}

/** Whether `addon` is no older than every source it is built from (in a package from npm all files have one date). */
function current(addon) {
  if (!existsSync(addon)) return false;
  const built = statSync(addon).mtimeMs;
  const sources = [join(root, 'binding.gyp'), ...readdirSync(join(root, 'native')).filter((f) => /\.(cc|h)$/.test(f)).map((f) => join(root, 'native', f))];
  return sources.every((s) => statSync(s).mtimeMs <= built);
}

function say(message) {
  process.stderr.write(`mprun: ${message}\n`);
}

function build() {
  const missing = [];
  for (const [tool, pkg] of [['python3', 'python3'], ['make', 'make'], ['g++', 'g++']]) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) missing.push(`${tool} (Debian: apt-get install ${pkg})`);
  }
  const nodedir = process.env.npm_config_nodedir;
  if (nodedir && !existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
    missing.push(`Node.js headers under ${nodedir}/include/node (npm_config_nodedir points there)`);
  }
  if (missing.length > 0) {
    say(`cannot build the native addon (no prebuilt one for ${tag} loads here); missing:\n  ${missing.join('\n  ')}`);
    return 1;
  }
  const r = spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit', shell: false, cwd: root });
  if (r.error) {
    say(`cannot run node-gyp (${r.error.message}); it comes with npm`);
    return 1;
  }
  if (r.status !== 0) say('the native addon failed to build; the compiler output above says why');
  return r.status ?? 1;
}

function main() {
  const force = args.has('--force');
  if (args.has('--prebuild')) {
    const code = !force && current(release) && loads(release) ? 0 : build();
    if (code !== 0) return code;
    mkdirSync(dirname(prebuilt), { recursive: true });
    copyFileSync(release, prebuilt);
    say(`prebuilt addon for ${tag}: ${prebuilt}`);
    return 0;
  }
  const plan = force ? 'build' : current(prebuilt) && loads(prebuilt) ? 'prebuilt' : current(release) && loads(release) ? 'current' : 'build';
  if (args.has('--check')) {
    process.stdout.write(`${plan}\n`);
    return 0;
  }
  if (plan === 'prebuilt') return 0; // native/index.ts loads it
  if (plan === 'current') return 0;
  return build();
}

process.exit(main());
