/** mprun inside Slurm allocations of the local Slurm cluster (slurmctld and two slurmd). */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { app, eventually, mprunBin, rankProcesses, root } from '../helpers.js';
import { slurmUnavailable, startSlurm, type SlurmCluster } from './slurm.js';

const why = slurmUnavailable();
if (why !== null) console.log(`Slurm tests skipped: ${why}`);

describe.skipIf(why !== null)('mprun under Slurm', () => {
  let slurm: SlurmCluster;
  const salloc = (args: string[]): { code: number | null; stdout: string; stderr: string } => {
    const r = spawnSync('salloc', args, { encoding: 'utf8', cwd: root, env: { ...process.env, ...slurm.env }, timeout: 60_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  beforeAll(async () => {
    slurm = await startSlurm(2);
  }, 60_000);
  afterAll(() => {
    slurm?.stop();
    // Nothing of the job or of the fixture outlives it (dead processes not yet reaped, state Z, do not count).
    const left = spawnSync('ps', ['-eo', 'stat=,comm='], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((l) => /\b(slurmstepd|slurmd|slurmctld|munged)\b/.test(l) && !l.trim().startsWith('Z'));
    expect(left).toEqual([]);
  });

  it('plain `mprun app` uses the allocation: its nodes, and -n from its task count', async () => {
    const r = salloc(['-N2', '-n4', process.execPath, mprunBin, app('where.ts')]);
    expect(r.stderr).not.toMatch(/mprun:/);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('rank ')).map((l) => /^rank (\d) of (\d) on \S+ \(node (node\d), local (\d) of (\d)\)/.exec(l)!.slice(1).join(' ')).sort();
    expect(lines).toEqual(['0 4 node1 0 2', '1 4 node1 1 2', '2 4 node2 0 2', '3 4 node2 1 2']);
    expect(await eventually(() => rankProcesses().length === 0)).toBe(true);
  });

  it('the rank API conformance app runs across the allocation\'s two nodes', async () => {
    const r = salloc(['-N2', '-n4', process.execPath, mprunBin, '-x', 'EXPECT_SIZE=4', '-x', 'EXPECT_NODES=2', app('api.ts')]);
    expect(r.stderr).not.toMatch(/mprun:|Error/);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').filter((l) => l.startsWith('api ok')).sort()).toEqual(['api ok 0', 'api ok 1', 'api ok 2', 'api ok 3']);
    expect(await eventually(() => rankProcesses().length === 0)).toBe(true);
  });

  it('a failing rank on the second node sets the exit code and is named', async () => {
    const r = salloc(['-N2', '-n2', process.execPath, mprunBin, app('where.ts'), 'fail', '1', '7']);
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/rank 1 \(pid \d+ on node2\) exited with code 7; aborting the job/);
    expect(await eventually(() => rankProcesses().length === 0)).toBe(true);
  });
});
