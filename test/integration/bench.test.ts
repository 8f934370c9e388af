/** The benchmark suite runs (tiny sizes, data validated); no timing is asserted here. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
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
    // The cold figure beside the steady one.
    expect(lines[lines.length - 1]).toMatch(/^# Cold \(8 B, one way\): [\d.]+ us, the first 500 calls right after init\(\) from a top-level loop, no warm-up; steady: [\d.]+ us$/);
  });

  it('barrier and allreduce print their cold figure; --json as a last line marked cold', async () => {
    const r = await runMprun(['-n', '3', osu, 'barrier', '-i', '4', '-x', '1', '--cold', '20']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\n# Cold \(barrier\): [\d.]+ us, the first 20 calls right after init\(\) from a top-level loop, no warm-up; steady: [\d.]+ us\n$/);
    const j = await runMprun(['-n', '2', osu, 'allreduce', '-m', '8:16', '-i', '4', '-x', '1', '--cold', '20', '--json']);
    expect(j.code).toBe(0);
    const rows = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as { size: number; value: number; iterations: number; cold?: boolean });
    expect(rows.map((x) => [x.size, x.cold ?? false])).toEqual([[8, false], [16, false], [8, true]]);
    expect(rows[2]!.iterations).toBe(20);
    expect(rows[2]!.value).toBeGreaterThan(0);
  });

  it('the cold comparison runs mprun, Open MPI and mpi4py alternately and prints its table', () => {
    const r = spawnSync(process.execPath, [join(root, 'dist', 'bench', 'cold.js'), '--rounds', '2', '--chunks', '2', '--per', '10', '--warmup', '10', '--only', 'latency@2,allreduce@3'], { encoding: 'utf8', cwd: root, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('round 2/2 allreduce -n 3 openmpi: cold ');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^Cold and steady, us per operation .*2 chunks of 10 operations right after init, 2 alternating rounds/);
    expect(lines.find((l) => l.startsWith('| operation'))).toContain('| mprun median | mprun worst | mprun steady | Open MPI median |');
    const rows = lines.filter((l) => /^\| (send|allreduce)/.test(l)).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
    expect(rows.map((x) => [x[0], x[1]])).toEqual([['send/recv latency, 8 B', '2'], ['allreduce 8 B (float64 sum)', '3']]);
    for (const row of rows) {
      // mprun's and Open MPI's three figures and the three ratios are numbers; mpi4py's are too where it is installed.
      for (const i of [2, 3, 4, 5, 6, 7, 11, 12, 13]) expect(Number(row[i])).toBeGreaterThan(0);
      for (const i of [8, 9, 10]) expect(row[i] === 'n/a' || Number(row[i]) > 0).toBe(true);
    }
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

  for (const [name, n] of [['bw', 2], ['bibw', 2], ['atomic_latency', 2], ['barrier', 3], ['bcast', 3], ['reduce', 3], ['allreduce', 8], ['allgather', 3], ['gather', 3], ['scatter', 3], ['alltoall', 3]] as const) {
    it(`${name} runs with ${n} ranks and validates, OSU format`, async () => {
      const r = await runMprun(['-n', String(n), osu, name, '-m', '1:256', '-i', '4', '-x', '1', '-c', '-f']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^# mprun OSU-style /);
      const rows = r.stdout.trim().split('\n').filter((l) => !l.startsWith('#'));
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) expect(Number(row.trim().split(/\s+/)[1])).toBeGreaterThan(0);
    });
  }

  it('compare runs mprun and Open MPI alternately, prints ratios and writes the SVG', async () => {
    const plotDir = mkdtempSync(join(tmpdir(), 'mprun-plot-'));
    onTestFinished(() => rmSync(plotDir, { recursive: true, force: true }));
    const svg = join(plotDir, 'latency.svg');
    const r = spawnSync(process.execPath, [join(root, 'dist', 'bench', 'compare.js'), 'latency', '-n', '2', '-m', '0:16', '-i', '20', '-x', '2', '--rounds', '2', '--plot', svg], { encoding: 'utf8', cwd: root });
    expect(r.stderr).toContain('round 2/2');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('mprun latency vs Open MPI latency, 2 ranks, medians of 2 alternating rounds');
    const rows = r.stdout.trim().split('\n').filter((l) => !l.startsWith('#')).map((l) => l.trim().split(/\s+/).map(Number));
    expect(rows.map((x) => x[0])).toEqual([0, 1, 2, 4, 8, 16]);
    for (const [, ours, theirs, ratio] of rows) {
      expect(ours).toBeGreaterThan(0);
      expect(theirs).toBeGreaterThan(0);
      expect(Math.abs(ratio! - ours! / theirs!) / ratio!).toBeLessThan(0.1); // the figures are printed rounded
    }
    expect(readFileSync(svg, 'utf8')).toMatch(/^<svg[\s\S]*<polyline[\s\S]*<polyline[\s\S]*<\/svg>\s*$/);
  });

  it('refuses unknown benchmarks and options', async () => {
    const r = await runMprun(['-n', '2', osu, 'nonsense']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/rank 0 \(pid \d+\) called abort: unknown benchmark 'nonsense'/);
    const r2 = await runMprun(['-n', '2', osu, 'latency', '-q']);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/called abort: unknown option -q/);
  });

  it('the checkpoint benchmark runs its limits and a job, and prints the table row with ratios', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mprun-ckpt-bench-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const r = spawnSync(process.execPath, [join(root, 'dist', 'bench', 'ckpt.js'), '--sizes', '4', '--rounds', '1', '--ranks', '2', '--dir', dir], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const row = r.stdout.split('\n').find((l) => l.startsWith('| 4 MiB'));
    expect(row).toMatch(/^\| 4 MiB \| [\d.]+ GB\/s \([\d.]+ s\) \| [\d.]+ GB\/s \| [\d.]+ GB\/s \| [\d.]+ GB\/s \| [\d.]+ \| [\d.]+ \| [\d.]+ ms \| [\d.]+ \|$/);
    // The job's pools were removed after it.
    expect(spawnSync('find', [dir, '-name', '*.part0'], { encoding: 'utf8' }).stdout).toBe('');
  });
});
