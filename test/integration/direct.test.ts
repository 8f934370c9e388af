/**
 * Direct launch (issue 12): ranks started by a PMIx server instead of mprun
 * bootstrap from it. Under Open MPI 4.1's mpirun on this node: a plain .js
 * app with `node`, and .ts apps with `mprun --direct`, run the whole rank API
 * conformance app and every collective; init() says clearly when PMIx is
 * there but unusable; a rank that fails makes mpirun's job fail.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { app, mprunBin, rankProcesses, root, shmFiles } from '../helpers.js';

const hasMpirun = spawnSync('sh', ['-c', 'command -v mpirun && ldconfig -p | grep -q "libpmix.so.2 "']).status === 0;
if (!hasMpirun) console.log('direct launch tests skipped: needs mpirun and libpmix.so.2 (Debian: openmpi-bin, libpmix2; .ci/run installs them)');

// As root (this machine, CI) mpirun needs both variables; more ranks than cores need oversubscription.
const ompiEnv = { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_rmaps_base_oversubscribe: '1' };

function mpirun(n: number, argv: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('mpirun', ['-n', String(n), ...Object.keys(env).flatMap((k) => ['-x', k]), ...argv], { encoding: 'utf8', cwd: root, env: { ...process.env, ...ompiEnv, ...env }, timeout: 120_000, killSignal: 'SIGKILL' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const lines = (out: string, prefix: string): string[] => out.split('\n').filter((l) => l.startsWith(prefix)).sort();

describe.skipIf(!hasMpirun)('direct launch under mpirun (PMIx)', () => {
  it('a plain .js app bootstraps from PMIx: rank, size and the node peers over shared memory', () => {
    const r = mpirun(4, [process.execPath, app('plain.mjs')], { MPRUN_DEBUG: '1' });
    expect(r.code).toBe(0);
    expect(lines(r.stdout, 'plain ')).toEqual(['plain 0 of 4', 'plain 1 of 4', 'plain 2 of 4', 'plain 3 of 4']);
    expect(r.stderr).toMatch(/mprun\[0\]: pid \d+ node \S+ \(pmix\); peers: 0:self 1:xpmem\/\S+ 2:xpmem\/\S+ 3:xpmem\/\S+/);
  });

  it('mprun --direct runs .ts apps: the whole rank API and every collective pass', () => {
    const api = mpirun(4, [process.execPath, mprunBin, '--direct', app('api.ts')], { EXPECT_SIZE: '4' });
    expect(api.stderr).toBe('');
    expect(api.code).toBe(0);
    expect(lines(api.stdout, 'api ok')).toEqual(['api ok 0', 'api ok 1', 'api ok 2', 'api ok 3']);
    const coll = mpirun(3, [process.execPath, mprunBin, '--direct', app('coll.ts')]);
    expect(coll.code).toBe(0);
    expect(lines(coll.stdout, 'coll ok')).toEqual(['coll ok 0', 'coll ok 1', 'coll ok 2']);
    expect(rankProcesses()).toEqual([]);
    expect(shmFiles()).toEqual([]);
  });

  it('a rank that throws fails the job, its report naming the rank', () => {
    const r = mpirun(2, [process.execPath, mprunBin, '--direct', app('misuse.ts'), 'throw']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/rank 1: Error: a failure of the program/);
  });

  it('PMIx present but unusable is a clear error, not a singleton', () => {
    const r = mpirun(1, [process.execPath, app('plain.mjs')], { MPRUN_PMIX_LIB: '/nonexistent/libpmix.so.2' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/started by a PMIx server, but PMIx cannot be used: .*\/nonexistent\/libpmix\.so\.2/);
  });
});
