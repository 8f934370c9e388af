/** The whole rank API, through real jobs started by mprun, at several sizes. */
import { afterEach, describe, expect, it } from 'vitest';
import { app, rankProcesses, runMprun, shmFiles, root } from '../helpers.js';
import { join } from 'node:path';

afterEach(() => {
  expect(rankProcesses()).toEqual([]);
  expect(shmFiles()).toEqual([]);
});

describe('rank API', () => {
  for (const n of [1, 2, 3, 4, 8]) {
    it(`every call works with ${n} rank(s)`, async () => {
      const r = await runMprun(['-n', String(n), '-x', `EXPECT_SIZE=${n}`, app('api.ts')]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split('\n').sort();
      expect(lines).toEqual(Array.from({ length: n }, (_, i) => `api ok ${i}`).sort());
    });
  }

  it('every call works after init() warmed up (MPRUN_WARMUP), and a warm-up that is no count is refused', async () => {
    const r = await runMprun(['-n', '3', '-x', 'EXPECT_SIZE=3', '-x', 'MPRUN_WARMUP=300', app('api.ts')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['api ok 0', 'api ok 1', 'api ok 2']);
    const bad = await runMprun(['-n', '2', '-x', 'MPRUN_WARMUP=-5', app('api.ts')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/MPRUN_WARMUP must be a whole number of rounds/);
  });

  for (const n of [1, 3]) {
    it(`shared variables, semaphores and holes work with ${n} rank(s) on one node`, async () => {
      const r = await runMprun(['-n', String(n), app('dsm.ts')]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split('\n').sort()).toEqual(Array.from({ length: n }, (_, i) => `dsm ok ${i}`));
    });
  }

  it('runs the README example with 8 ranks', async () => {
    const r = await runMprun(['-n', '8', join(root, 'examples', 'hello.ts')]);
    expect(r.code).toBe(0);
    for (let i = 0; i < 8; i++) expect(r.stdout).toContain(`hello from rank ${i} of 8`);
    expect(r.stdout).toContain('token came back after 8 hops: 0 -> 1 -> 2 -> 3 -> 4 -> 5 -> 6 -> 7 -> 0');
    expect(r.stdout).toContain('sum of (rank + 1) over 8 ranks: 36 (expected 36)');
  });

  it('misuse of every promise-returning call rejects its promise (never throws past .catch())', async () => {
    const r = await runMprun(['-n', '2', app('misuse.ts')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['misuse ok 0', 'misuse ok 1']);
  });

  it("an uncaught error's report names the rank that raised it", async () => {
    const r = await runMprun(['-n', '2', app('misuse.ts'), 'throw']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^rank 1: Error: a failure of the program$/m);
  });

  it('runs a plain .js app too', async () => {
    const r = await runMprun(['-n', '2', app('plain.mjs')]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['plain 0 of 2', 'plain 1 of 2']);
  });

  it('8 ranks forced onto the cores (4 per core) still all make progress', async () => {
    const r = await runMprun(['-n', '8', '--bind-to', 'core', app('api.ts')]);
    expect(r.code).toBe(0);
  });
});
