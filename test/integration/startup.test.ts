/**
 * Issue 10, items 3 and 4: a job starts from one rank bundle per job (cached),
 * its stacks still name the .ts lines; `npm install` (and npx, which installs
 * a checkout again) does not rebuild an addon that is current; the packed
 * package installs and runs an app with no compiler on the PATH.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { root, runMprun } from '../helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'mprun-startup-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A bin folder with node and sh only: no compiler, no make, no python, no node-gyp. */
function bareBin(): string {
  const bin = join(scratch, 'bin');
  if (!existsSync(bin)) {
    mkdirSync(bin);
    for (const [name, target] of [
      ['node', process.execPath],
      ['sh', '/bin/sh'],
      ['npm', '/usr/lib/node_modules/npm/bin/npm-cli.js'],
      ['npx', '/usr/lib/node_modules/npm/bin/npx-cli.js'],
    ] as const) {
      if (existsSync(target)) symlinkSync(target, join(bin, name));
    }
  }
  return bin;
}

/** An app of these lines, NAME/NAME.ts in the scratch folder (a folder of its own: its own bundle). */
function appFile(name: string, lines: string[]): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, [...lines, ''].join('\n'));
  return file;
}

describe('startup', () => {
  it('runs hello from a cached rank bundle; a second run reuses it', async () => {
    const cache = join(scratch, 'cache');
    const env = { MPRUN_CACHE_DIR: cache };
    const first = await runMprun(['-n', '2', 'examples/hello.ts'], { env });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('sum of (rank + 1) over 2 ranks: 3 (expected 3)');
    const bundles = readdirSync(cache).filter((f) => f.endsWith('.rank.mjs'));
    expect(bundles).toHaveLength(1);
    const second = await runMprun(['-n', '2', 'examples/hello.ts'], { env });
    expect(second.code, second.stderr).toBe(0);
    expect(readdirSync(cache).filter((f) => f.endsWith('.rank.mjs'))).toEqual(bundles);
  });

  it("an uncaught error's stack names the app's .ts lines (mapped when printed, not at start)", async () => {
    const file = appFile('boom', ["import { init } from 'mprun';", '', 'interface P { n: number }', 'function explode(p: P): never {', '  throw new Error(`boom ${p.n}`);', '}', 'const world = await init();', 'if (world.rank === 1) explode({ n: 1 });', 'await world.finalize();']);
    const r = await runMprun(['-n', '2', file], { env: { MPRUN_NO_COMPILE_CACHE: '1' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('rank 1: Error: boom 1');
    expect(r.stderr).toContain(`at explode (${file}:5:9)`);
    // The app's top level as Node prints a module's: no function named after the module, no frame of mprun's entry.
    expect(r.stderr).toMatch(new RegExp(`\\n {4}at ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:8:\\d+\\n`));
    expect(r.stderr).not.toContain('rank-entry');
  });

  // What the ES module facades of node:process and node:fs load (they read every export): the bundles take builtins with process.getBuiltinModule.
  const FACADE_LOADS = ['NativeModule internal/process/report', 'NativeModule internal/fs/streams'];
  // The waits' clock is the addon's: node:perf_hooks loads ten modules (2.3 ms of a rank's start).
  const PERF_HOOKS = 'NativeModule perf_hooks';

  it("a rank that uses no checkpoint daemon and no semaphore loads neither node:crypto nor node:child_process, nor what builtins' module facades load, nor node:perf_hooks", async () => {
    const file = appFile('builtins', [
      "import { init } from 'mprun';",
      'const world = await init();',
      "await world.allreduce(1, 'sum');",
      `const loaded = process.moduleLoadList.filter((m) => m === 'NativeModule crypto' || m === 'NativeModule child_process' || ${JSON.stringify([...FACADE_LOADS, PERF_HOOKS])}.includes(m));`,
      'console.log(`rank ${world.rank} loaded: [${loaded.join(\', \')}]`);',
      'await world.finalize();',
    ]);
    const r = await runMprun(['-n', '2', file]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['rank 0 loaded: []', 'rank 1 loaded: []']);
  });

  it('ranks start without NODE_EXTRA_CA_CERTS (Node parses it at every start) unless -x exports it, and a rank given it trusts its certificates', async () => {
    // A real certificate file: Node warns on stderr ("Ignoring extra certs") when it cannot use one.
    const certs = ['/etc/ssl/certs/ca-certificates.crt', '/etc/ssl/cert.pem'].find((f) => existsSync(f));
    if (certs === undefined) {
      console.warn('skipped: no system certificate bundle (/etc/ssl/certs/ca-certificates.crt) to point NODE_EXTRA_CA_CERTS at');
      return;
    }
    const file = appFile('ca-certs', [
      "import { init } from 'mprun';",
      'const world = await init();',
      "console.log(`rank ${world.rank}: ${process.env.NODE_EXTRA_CA_CERTS ?? 'unset'}`);",
      'await world.finalize();',
    ]);
    const env = { NODE_EXTRA_CA_CERTS: certs };
    const dropped = await runMprun(['-n', '2', file], { env });
    expect(dropped.code, dropped.stderr).toBe(0);
    expect(dropped.stdout.trim().split('\n').sort()).toEqual(['rank 0: unset', 'rank 1: unset']);
    const kept = await runMprun(['-n', '2', '-x', 'NODE_EXTRA_CA_CERTS', file], { env });
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stdout.trim().split('\n').sort()).toEqual([`rank 0: ${certs}`, `rank 1: ${certs}`]);
    expect(kept.stderr).not.toMatch(/extra certs/i);
  });

  it("mprun's command runs from its bundle (every input the bundle lists is a file) and loads no builtin's module facade", () => {
    const { inputs } = JSON.parse(readFileSync(join(root, 'dist', 'mprun-cli.json'), 'utf8')) as { inputs: string[] };
    expect(inputs.length).toBeGreaterThan(50);
    // bin/mprun.js loads the bundle only when each input is a file no newer than it:
    const made = statSync(join(root, 'dist', 'mprun-cli.mjs')).mtimeMs;
    expect(inputs.filter((p) => !existsSync(join(root, p)) || statSync(join(root, p)).mtimeMs > made)).toEqual([]);
    const probe = join(scratch, 'modules.cjs');
    writeFileSync(probe, "process.on('exit', () => process.stderr.write('modules ' + JSON.stringify(process.moduleLoadList) + '\\n'));\n");
    const r = spawnSync(process.execPath, ['--require', probe, join(root, 'bin', 'mprun.js'), '--version'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const loaded = JSON.parse(/^modules (.*)$/m.exec(r.stderr)![1]!) as string[];
    expect(loaded.filter((m) => FACADE_LOADS.includes(m))).toEqual([]);
  });

  it('native/build.mjs leaves a current addon alone (no node-gyp, no compiler needed)', () => {
    const check = spawnSync(process.execPath, [join(root, 'native', 'build.mjs'), '--check'], { encoding: 'utf8' });
    expect(['prebuilt', 'current']).toContain(check.stdout.trim());
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [join(root, 'native', 'build.mjs')], { encoding: 'utf8', env: { ...process.env, PATH: bareBin() } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/node-gyp|cannot build/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('the packed package installs without a compiler (its prebuilt addon) and runs an app with npx mprun', () => {
    const packs = join(scratch, 'packs');
    mkdirSync(packs);
    const pack = spawnSync('npm', ['pack', '--pack-destination', packs], { cwd: root, encoding: 'utf8' });
    expect(pack.status, pack.stderr).toBe(0);
    const tgz = readdirSync(packs).find((f) => f.endsWith('.tgz'))!;
    const listing = spawnSync('tar', ['tzf', join(packs, tgz)], { encoding: 'utf8' }).stdout;
    expect(listing).toContain(`package/prebuilds/${process.platform}-${process.arch}/mprun_native.node`);
    expect(listing).toContain('package/dist/mprun-cli.mjs');

    const project = join(scratch, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'startup-test-app', version: '1.0.0', type: 'module', private: true }));
    writeFileSync(
      join(project, 'app.ts'),
      "import { init } from 'mprun';\nconst world = await init();\nconst sum = await world.allreduce(world.rank + 1, 'sum');\nif (world.rank === 0) console.log(`packed: ${world.size} ranks, sum ${sum}`);\nawait world.finalize();\n",
    );
    const env = { ...process.env, PATH: bareBin(), MPRUN_CACHE_DIR: join(scratch, 'project-cache') };
    const install = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(packs, tgz)], { cwd: project, encoding: 'utf8', env });
    expect(install.status, install.stderr).toBe(0);
    expect(existsSync(join(project, 'node_modules', 'mprun', 'build'))).toBe(false); // nothing was compiled
    const run = spawnSync('npx', ['mprun', '-n', '2', 'app.ts'], { cwd: project, encoding: 'utf8', env });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain('packed: 2 ranks, sum 3');
  }, 180_000);
});
