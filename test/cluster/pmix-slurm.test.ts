/**
 * PMIx direct launch under Slurm (issue 12): `srun --mpi=pmix -N2 -n4 node app` inside an
 * allocation of the local Slurm cluster (slurmctld and two slurmd, test/cluster/slurm.ts).
 * Each rank bootstraps from slurmd's PMIx server: rank, size, local rank and peers, node
 * name, and every rank's business card, after a collecting fence or on demand (direct
 * modex, served by Slurm's dmodex), also from a rank that commits late.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root } from '../helpers.js';
import { slurmUnavailable, startSlurm, type SlurmCluster } from './slurm.js';

const script = join(root, 'test', 'fixtures', 'pmix-card.mjs');

function unavailable(): string | null {
  const slurm = slurmUnavailable();
  if (slurm !== null) return slurm;
  if (!existsSync(join(root, 'dist', 'runtime', 'pmix.js'))) return 'needs the build (npx tsc -p tsconfig.json)';
  const lib = spawnSync('sh', ['-c', 'ldconfig -p | grep -q "libpmix.so.2 "']);
  if (lib.status !== 0) return 'needs libpmix.so.2 (Debian: libpmix2)';
  return null;
}

const why = unavailable();
if (why !== null) console.log(`PMIx under Slurm tests skipped: ${why}`);

describe.skipIf(why !== null)('PMIx direct launch under Slurm: srun --mpi=pmix', () => {
  let slurm: SlurmCluster;
  beforeAll(async () => {
    slurm = await startSlurm(2);
  }, 60_000);
  afterAll(() => slurm?.stop());

  const srun = (mode: string, env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } => {
    const r = spawnSync('salloc', ['-N2', '-n4', 'srun', '--mpi=pmix', '-N2', '-n4', process.execPath, script, mode], {
      encoding: 'utf8',
      cwd: root,
      env: { ...process.env, ...slurm.env, EXPECT_SIZE: '4', ...env },
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  for (const mode of ['fence', 'dmodex']) {
    it(`4 ranks on two nodes: rank, size, local rank and peers, node names, every card (${mode})`, () => {
      const r = srun(mode);
      expect(r.stderr).not.toMatch(/pmix (check failed|error)/);
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout
        .split('\n')
        .filter((l) => l.startsWith('pmix rank'))
        .sort();
      expect(lines).toHaveLength(4);
      const parsed = lines.map((l) => /^pmix rank (\d) of 4 local (\d) of 2 node (\S+) peers (\S+) cards ok (\w+)$/.exec(l));
      expect(parsed.every((m) => m !== null)).toBe(true);
      const rows = parsed.map((m) => ({ rank: Number(m![1]), local: Number(m![2]), node: m![3]!, peers: m![4]!, mode: m![5]! }));
      // Block distribution: ranks 0 and 1 on the first node, 2 and 3 on the second.
      expect(rows.map((x) => `${x.rank} ${x.local} ${x.peers} ${x.mode}`)).toEqual([`0 0 0,1 ${mode}`, `1 1 0,1 ${mode}`, `2 0 2,3 ${mode}`, `3 1 2,3 ${mode}`]);
      expect(rows[0]!.node).toBe(rows[1]!.node);
      expect(rows[2]!.node).toBe(rows[3]!.node);
      expect(rows[0]!.node).not.toBe(rows[2]!.node);
      expect(slurm.nodes).toContain(rows[0]!.node);
      expect(slurm.nodes).toContain(rows[2]!.node);
    }, 150_000);
  }

  // Slurm's pmixp_dmdx.c has a 10 s direct-modex timeout; here (22.05.8) a fetch waited 25 s for a late
  // commit without timing out. getCard asks again on a timeout anyway; this checks the late card arrives.
  it('a card committed 12 s after the others ask for it still arrives (past Slurm\'s 10 s dmodex timeout)', () => {
    const t0 = Date.now();
    const r = srun('late', { LATE_MS: '12000' });
    expect(r.stderr).not.toMatch(/pmix (check failed|error)/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n').filter((l) => / cards ok late$/.test(l))).toHaveLength(4);
    expect(Date.now() - t0).toBeGreaterThan(12_000);
  }, 150_000);

  it('mprun --direct: the whole rank API on 2 nodes x 2 ranks, shared memory within a node and UCX across', () => {
    const ucx = spawnSync('sh', ['-c', 'ldconfig -p | grep -q "libucp.so.0 "']).status === 0;
    if (!ucx) {
      console.log('skipped: needs libucp.so.0 (Debian: libucx0); .ci/run installs it');
      return;
    }
    const r = spawnSync('salloc', ['-N2', '-n4', 'srun', '--mpi=pmix', '-N2', '-n4', process.execPath, join(root, 'bin', 'mprun.js'), '--direct', join(root, 'test', 'apps', 'api.ts')], {
      encoding: 'utf8',
      cwd: root,
      env: { ...process.env, ...slurm.env, EXPECT_SIZE: '4', EXPECT_NODES: '2', MPRUN_NET: 'ucx' },
      timeout: 150_000,
      killSignal: 'SIGKILL',
    });
    expect(r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('salloc: ')).join('\n')).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n').filter((l) => l.startsWith('api ok')).sort()).toEqual(['api ok 0', 'api ok 1', 'api ok 2', 'api ok 3']);
  }, 180_000);

  it('without --mpi=pmix the ranks are refused, not run as singletons', () => {
    const r = spawnSync('salloc', ['-N1', '-n1', 'srun', '-n1', process.execPath, script, 'connect'], {
      encoding: 'utf8',
      cwd: root,
      env: { ...process.env, ...slurm.env },
      timeout: 60_000,
    });
    expect(r.stderr).toMatch(/pmix error ERR_MPRUN_UNSUPPORTED: not started by a PMIx server/);
    expect(r.status).not.toBe(0);
  }, 90_000);
});
