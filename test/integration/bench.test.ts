/** The benchmark suite runs (tiny sizes, data validated); no timing is asserted here. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, runMprun } from '../helpers.js';

const osu = join(root, 'bench', 'osu.ts');

describe('OSU-style benchmarks', () => {
  it('latency prints the OSU table for sizes 0..64, validating the data', async () => {
    const r = await runMprun(['-n', '2', osu, 'latency', '-m', '0:64', '-i', '20', '-x', '2', '-c', '-f']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^# mprun OSU-style Latency Test/);
    expect(lines.find((l) => l.startsWith('# Size'))).toMatch(/# Size\s+Latency \(us\)\s+Min\s+Max\s+Iterations/);
    const rows = lines.filter((l) => !l.startsWith('#')).map((l) => l.trim().split(/\s+/).map(Number));
    expect(rows.map((r) => r[0])).toEqual([0, 1, 2, 4, 8, 16, 32, 64]);
    for (const row of rows) expect(row[1]).toBeGreaterThan(0);
  });

  for (const name of ['put_bw', 'get_bw', 'put_latency', 'get_latency']) {
    it(`${name} runs and validates, as JSON lines`, async () => {
      const r = await runMprun(['-n', '2', osu, name, '-m', '1:4096', '-i', '5', '-x', '1', '-c', '--json']);
      expect(r.code).toBe(0);
      const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { benchmark: string; size: number; value: number; extra?: Record<string, number> });
      expect(rows.map((x) => x.size)).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]);
      for (const row of rows) {
        expect(row.benchmark).toBe(name);
        expect(row.value).toBeGreaterThan(0);
        if (name.endsWith('_bw')) expect(Object.keys(row.extra ?? {})).toContain('memcpy (MB/s)');
      }
    });
  }

  it('refuses unknown benchmarks and options', async () => {
    const r = await runMprun(['-n', '2', osu, 'nonsense']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown benchmark 'nonsense'");
    const r2 = await runMprun(['-n', '2', osu, 'latency', '-q']);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('unknown option -q');
  });
});
