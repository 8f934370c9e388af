/** Many ranks on one node, and sizes near what one node can map (issue 13). */
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, rankProcesses, root, runMprun, shmFiles } from '../helpers.js';
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
