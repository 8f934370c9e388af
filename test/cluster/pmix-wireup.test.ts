/**
 * Wire-up on first use under PMIx direct launch (issue 12.4): `srun --mpi=pmix
 * -N2 -n4 mprun --direct` on the local Slurm cluster. The layout comes from
 * the ranks' PMIX_HOSTNAMEs, the fence collects nothing, and each rank gets
 * only its node's cards at init (PMIx_Get), a node's first rank its one
 * collective partner on the other node, and a rank that talks to its
 * neighbour on the other node that one card more (direct modex, UCX across).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root } from '../helpers.js';
import { slurmUnavailable, startSlurm, type SlurmCluster } from './slurm.js';

function unavailable(): string | null {
  const slurm = slurmUnavailable();
  if (slurm !== null) return slurm;
  if (spawnSync('sh', ['-c', 'ldconfig -p | grep -q "libpmix.so.2 "']).status !== 0) return 'needs libpmix.so.2 (Debian: libpmix2)';
  if (spawnSync('sh', ['-c', 'ldconfig -p | grep -q "libucp.so.0 "']).status !== 0) return 'needs libucp.so.0 (Debian: libucx0)';
  return null;
}

const why = unavailable();
if (why !== null) console.log(`PMIx wire-up tests skipped: ${why}`);

describe.skipIf(why !== null)('PMIx direct launch fetches cards on first use', () => {
  let slurm: SlurmCluster;
  beforeAll(async () => {
    slurm = await startSlurm(2);
  }, 60_000);
  afterAll(() => slurm?.stop());

  it('srun --mpi=pmix -N2 -n4: the node\'s cards at init, one more per partner on the other node', () => {
    const r = spawnSync('salloc', ['-N2', '-n4', 'srun', '--mpi=pmix', '-N2', '-n4', process.execPath, join(root, 'bin', 'mprun.js'), '--direct', join(root, 'test', 'apps', 'wireup-stats.ts')], {
      encoding: 'utf8',
      cwd: root,
      env: { ...process.env, ...slurm.env, MPRUN_NET: 'ucx', STRIDE: '2' },
      timeout: 150_000,
      killSignal: 'SIGKILL',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('wireup ok')).length).toBe(4);
    const stats = (rank: number, phase: string): Record<string, number> => JSON.parse(new RegExp(`^wireup ${rank} ${phase} (.*)$`, 'm').exec(r.stdout)![1]!) as Record<string, number>;
    for (let k = 0; k < 4; k++) {
      // Slurm's block distribution: ranks 0, 1 on the first node, 2, 3 on the second; 0 and 2 lead.
      const leader = k % 2 === 0;
      expect(stats(k, 'init').localCards, `rank ${k}`).toBe(2);
      expect(stats(k, 'init').cardsFetched, `rank ${k} at init`).toBe(leader ? 1 : 0);
      expect(stats(k, 'collectives').cardsFetched, `rank ${k} at the end`).toBe(1);
      expect(stats(k, 'collectives').controlBytes).toBe(0);
    }
  }, 180_000);

  it('srun --mpi=pmix -N2 -n4: synchronous splits and sends bind never-used partners blocking (PMIx_Get)', () => {
    const r = spawnSync('salloc', ['-N2', '-n4', 'srun', '--mpi=pmix', '-N2', '-n4', process.execPath, join(root, 'bin', 'mprun.js'), '--direct', join(root, 'test', 'apps', 'split-now.ts')], {
      encoding: 'utf8',
      cwd: root,
      env: { ...process.env, ...slurm.env, MPRUN_NET: 'ucx' },
      timeout: 150_000,
      killSignal: 'SIGKILL',
    });
    expect(r.status, r.stderr).toBe(0);
    const oks = r.stdout.split('\n').filter((l) => l.startsWith('split-now ok '));
    expect(oks.length).toBe(4);
    // Ranks 1 and 3 lead their nodes in the odd half: partners no world collective prepared.
    for (const k of [1, 3]) expect((JSON.parse(oks.find((l) => l.startsWith(`split-now ok ${k} `))!.split(' ').slice(3).join(' ')) as { syncBinds: number }).syncBinds).toBe(1);
    // And the first sendSync, and a recvIntoSync behind a send() not awaited, to ranks on the other node.
    expect(r.stdout.split('\n').filter((l) => l.startsWith('split-now p2p ')).length).toBe(4);
  }, 180_000);
});
