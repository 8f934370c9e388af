/**
 * A user's own project: an app in a folder of its own, outside this
 * repository, with its own package.json, imports 'mprun' (installed there or
 * not) and runs under mprun; `--typecheck` stops a type error before any rank.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root, runMprun } from '../helpers.js';

const GOOD = `import { init } from 'mprun';
import { version } from 'mprun/xpmem';
const world = await init();
const label: string = \`rank \${world.rank} of \${world.size}\`;
console.log(label, typeof version);
await world.finalize();
`;

const BAD = `import { init } from 'mprun';
const world = await init();
console.log('rank started', world.rank);
const size: string = world.size;
console.log(size);
await world.finalize();
`;

describe("an app in a user's own project", () => {
  let base: string;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'user-project-'));
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  const project = (name: string, files: Record<string, string>): string => {
    const dir = join(base, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', type: 'module', private: true }));
    for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
    return dir;
  };

  it('runs without mprun installed in the project (imports resolve to the running mprun)', async () => {
    const dir = project('bare', { 'app.ts': GOOD });
    const r = await runMprun(['-n', '2', join(dir, 'app.ts')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('rank 0 of 2 function');
    expect(r.stdout).toContain('rank 1 of 2 function');
  });

  it('a plain .js app outside any project that has mprun runs too (its import binds to the running mprun)', async () => {
    const dir = project('bare-js', { 'app.mjs': "import { init } from 'mprun';\nconst world = await init();\nconsole.log(`js rank ${world.rank} of ${world.size}`);\nawait world.finalize();\n" });
    const r = await runMprun(['-n', '2', join(dir, 'app.mjs')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['js rank 0 of 2', 'js rank 1 of 2']);
  });

  it('runs with mprun installed in the project (npm install /path/to/mprun links it)', async () => {
    const dir = project('installed', { 'app.ts': GOOD });
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(root, join(dir, 'node_modules', 'mprun'));
    const r = await runMprun(['-n', '2', join(dir, 'app.ts')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('rank 1 of 2 function');
  });

  it('an export mprun does not have is a compile error naming it', async () => {
    const dir = project('nosub', { 'app.ts': "import * as x from 'mprun/nothing';\nconsole.log(x);\n" });
    const r = await runMprun(['-n', '1', join(dir, 'app.ts')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Could not resolve "mprun\/nothing": mprun .* exports 'mprun', 'mprun\/xpmem' and 'mprun\/rpmem'/);
  });

  it('a type error runs anyway; --typecheck prints the diagnostic and starts no rank', async () => {
    const dir = project('typo', { 'app.ts': BAD });
    const unchecked = await runMprun(['-n', '1', join(dir, 'app.ts')]);
    expect(unchecked.code).toBe(0);
    expect(unchecked.stdout).toContain('rank started 0');
    const checked = await runMprun(['--typecheck', '-n', '2', join(dir, 'app.ts')]);
    expect(checked.code).toBe(1);
    expect(checked.stderr).toMatch(/app\.ts\(4,7\): error TS2322: Type 'number' is not assignable to type 'string'/);
    expect(checked.stderr).toContain('1 type error(s); no rank started');
    expect(checked.stdout).toBe('');
  });

  it('--typecheck passes a correct app (with or without a tsconfig.json) and runs it', async () => {
    const dir = project('checked', { 'app.ts': GOOD });
    const r = await runMprun(['--typecheck', '-n', '1', join(dir, 'app.ts')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('rank 0 of 1 function');
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', types: [] } }));
    const withConfig = await runMprun(['--typecheck', '-n', '1', join(dir, 'app.ts')]);
    expect(withConfig.code, withConfig.stderr).toBe(0);
  });
});
