/** Many ranks on one node, and sizes near what one node can map (issue 13). */
import { afterEach, describe, expect, it } from 'vitest';
import { app, eventually, rankProcesses, root, runMprun, shmFiles } from '../helpers.js';
import { join } from 'node:path';

afterEach(async () => {
  expect(await eventually(() => rankProcesses().length === 0)).toBe(true);
  expect(shmFiles()).toEqual([]);
});

const hello = join(root, 'examples', 'hello.ts');

describe('sizes one node cannot map', () => {
  it('MPRUN_HEAP_SIZE=5G is refused before any rank starts, naming the variable and the limit', async () => {
    const r = await runMprun(['-n', '2', hello], { env: { MPRUN_HEAP_SIZE: '5G' } });
    expect(r.stderr).not.toMatch(/double free/);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/MPRUN_HEAP_SIZE=5G is too large: .* maps at most 4G as one buffer .*use at most MPRUN_HEAP_SIZE=4G/);
    expect(r.stdout).not.toMatch(/hello from rank/);
  });

  it('MPRUN_QUEUE_SIZE=512M with 2 ranks runs (or is refused with a clear message), never aborts', async () => {
    const r = await runMprun(['-n', '2', hello], { env: { MPRUN_QUEUE_SIZE: '512M' } });
    expect(r.stderr).not.toMatch(/double free/);
    expect(r.code === 0 || /MPRUN_QUEUE_SIZE=512M is too large/.test(r.stderr)).toBe(true);
    expect(r.code).not.toBe(134);
  });

  it('MPRUN_HEAP_SIZE=4G (the largest one buffer holds) runs', async () => {
    const r = await runMprun(['-n', '2', hello], { env: { MPRUN_HEAP_SIZE: '4G' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/sum of \(rank \+ 1\) over 2 ranks: 3/);
  });
});

describe('many ranks on one node', () => {
  it('64 ranks start, message through one queue per rank, and map only the peers they touch', async () => {
    const r = await runMprun(['-n', '64', app('scale.ts')], { killAfterMs: 110_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const m = /scale ok: 64 ranks; at most (\d+) heap and (\d+) arena mappings per rank after init; control segment (\d+) bytes/.exec(r.stdout);
    expect(m).not.toBeNull();
    // Attached on first use: its own heap, not every peer's (was 64 each).
    expect(Number(m![1])).toBeLessThanOrEqual(2);
    expect(Number(m![2])).toBeLessThanOrEqual(2);
    // One 256K queue per rank and the agent (was 65 x 65 rings of 64K: 264 MiB).
    expect(Number(m![3])).toBeLessThan(65 * 256 * 1024 + 1024 * 1024);
  }, 120_000);
});
