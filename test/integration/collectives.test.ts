/** Collectives and teams through real jobs, against serial computations (test/apps/coll.ts). */
import { afterEach, describe, expect, it } from 'vitest';
import { app, eventually, rankProcesses, runMprun, shmFiles } from '../helpers.js';

afterEach(async () => {
  expect(await eventually(() => rankProcesses().length === 0)).toBe(true);
  expect(shmFiles()).toEqual([]);
});

describe('collectives', () => {
  for (const n of [1, 2, 3, 4, 8]) {
    it(`every collective, operator and type, on the world and on split teams, with ${n} rank(s)`, async () => {
      const r = await runMprun(['-n', String(n), app('coll.ts')], { killAfterMs: 170_000 });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split('\n').sort()).toEqual(Array.from({ length: n }, (_, i) => `coll ok ${i}`).sort());
    }, 180_000);
  }

  it('a collective called from the continuation of one in flight waits for those called before it, on every rank', async () => {
    const r = await runMprun(['-n', '3', app('order.ts')], { killAfterMs: 50_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['order ok 0', 'order ok 1', 'order ok 2']);
  }, 60_000);

  it("a collective awaited while another team's is in its steps, or a waitUntil is pending, lets their continuations run, not sleeping a slice", async () => {
    const r = await runMprun(['-n', '2', app('two-teams.ts')], { env: { MPRUN_BLOCK_SLICE_MS: '5000' }, killAfterMs: 50_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const ms = JSON.parse(/two-teams ms (\[.*\])/.exec(r.stdout)![1]!) as number[];
    expect(ms).toHaveLength(15);
    // A round is a few milliseconds; a sleep in the wrong wait is a whole doze (1 s) or slice (5 s).
    expect(Math.max(...ms)).toBeLessThan(900);
  }, 60_000);

  for (const [kind, message] of [
    ['length', /collective mismatch: team rank \d \(world rank \d\) passed (64|128) bytes, this rank (128|64)/],
    ['kind', /collective mismatch: team rank \d \(world rank \d\) called (bcast|allreduce) where this rank called (allreduce|bcast)/],
    ['type', /collective mismatch: .* passed (Int32Array|Float64Array), this rank (Float64Array|Int32Array)/],
    ['alloc', /collective mismatch in alloc on rank \d: .*rank 0: alloc #1 Float64Array\(10\).*rank 2: alloc #1 Float64Array\(20\)/],
    ['bcast', /collective mismatch: team rank 0 \(world rank 0\) broadcasts 64 bytes of Float64Array into this rank's Float64Array of 32 bytes/],
  ] as const) {
    it(`a mismatched call (${kind}) ends the job with a clear message, not a hang`, async () => {
      const r = await runMprun(['-n', '3', '--timeout', '30', app('mismatch.ts'), kind]);
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBe(124); // not the timeout: the mismatch was detected
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/rank \d \(pid \d+\) exited with code 1; aborting the job/);
    });
  }
});
