/**
 * `npm run scale` (bench/scale.ts) runs on 1 and 2 namespace nodes with tiny
 * counts and prints its table and both checks of issue 12 (launch, log2
 * growth of messages). No timing is asserted. Needs root and namespaces
 * (the test cluster); skipped with the reason otherwise.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { root } from '../helpers.js';
import { clusterUnavailable } from '../../bench/cluster.js';

const why = clusterUnavailable();
if (why !== null) console.log(`npm run scale smoke test skipped: ${why}`);

describe.skipIf(why !== null)('npm run scale', () => {
  it('runs on 1 and 2 nodes with tiny counts and prints its table and checks', () => {
    const r = spawnSync('npm', ['run', '--silent', 'scale', '--', '--nodes', '1,2', '--rounds', '1', '--iters', '4', '--skip', '1', '--large-iters', '2', '--large-skip', '1'], { encoding: 'utf8', cwd: root, timeout: 280_000 });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^mprun across namespace nodes \(--net tcp\), 2 ranks per node; medians of 1 alternating round\(s\).*load average/);
    expect(lines).toContain('| nodes | ranks | launch (ms) | barrier (us) | allreduce 8 B (us) | allreduce 1 MiB (us) | msgs barrier | msgs allreduce 8 B | msgs allreduce 1 MiB | bytes allreduce 8 B | bytes allreduce 1 MiB |');
    const rows = lines.filter((l) => /^\| \d/.test(l)).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
    expect(rows.map((x) => [x[0], x[1]])).toEqual([['1', '2'], ['2', '4'], ['1 (reference)', '4']]);
    for (const row of rows.slice(0, 2)) {
      for (const i of [2, 3, 4, 5]) expect(Number(row[i])).toBeGreaterThan(0);
      // Messages "network / in all", or n/a when the runtime keeps no counters.
      for (const i of [6, 7, 8]) expect(row[i]).toMatch(/^(\d+(\.\d+)? \/ \d+(\.\d+)?|n\/a)$/);
    }
    // One node: the shared-memory engine sends no messages.
    if (rows[0]![6] !== 'n/a') expect(rows[0]!.slice(6, 9)).toEqual(['0 / 0', '0 / 0', '0 / 0']);
    expect(Number(rows[2]![2])).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/\nLaunch: 4 ranks on 2 nodes \d+ ms vs 4 ranks on one node \d+ ms: [\d.]+x \(target <= 3x\): (met|NOT met)\n/);
    expect(r.stdout).toMatch(/\n(Messages per rank per collective grow as log2 of the node count: (met|NOT met)|Messages: the runtime has no collective counters.*)\n/);
  }, 300_000);
});
