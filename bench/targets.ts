/**
 * The performance targets of the collectives issue, measured against Open MPI
 * in one run (bench/compare.ts, medians of alternating rounds), printed as
 * the markdown table the README keeps.
 *   npm run targets [-- --rounds R]
 */
import { compare, CompareError } from './compare.js';

interface Target {
  what: string;
  name: string;
  against?: string;
  ranks: number;
  size: number;
  /** mprun / Open MPI must be at most (latency) or at least (bandwidth) this. */
  bound: number;
  higherIsBetter: boolean;
  args: string[];
}

const M = 1024 * 1024;
const TARGETS: Target[] = [
  { what: 'send/recv latency, 8 B', name: 'latency', ranks: 2, size: 8, bound: 1.0, higherIsBetter: false, args: ['-m', '8:8'] },
  { what: 'put bandwidth, 1 MiB (vs osu_bw)', name: 'put_bw', against: 'bw', ranks: 2, size: M, bound: 2.0, higherIsBetter: true, args: ['-m', '1M:1M'] },
  { what: 'get bandwidth, 1 MiB (vs osu_bw)', name: 'get_bw', against: 'bw', ranks: 2, size: M, bound: 2.0, higherIsBetter: true, args: ['-m', '1M:1M'] },
  { what: 'barrier', name: 'barrier', ranks: 2, size: 0, bound: 1.0, higherIsBetter: false, args: [] },
  { what: 'barrier', name: 'barrier', ranks: 8, size: 0, bound: 1.0, higherIsBetter: false, args: [] },
  { what: 'allreduce 8 B (float64 sum)', name: 'allreduce', ranks: 2, size: 8, bound: 1.0, higherIsBetter: false, args: ['-m', '8:8'] },
  { what: 'allreduce 8 B (float64 sum)', name: 'allreduce', ranks: 8, size: 8, bound: 1.0, higherIsBetter: false, args: ['-m', '8:8'] },
  { what: 'allreduce 1 MiB (float64 sum)', name: 'allreduce', ranks: 2, size: M, bound: 1.0, higherIsBetter: false, args: ['-m', '1M:1M'] },
  { what: 'allreduce 1 MiB (float64 sum)', name: 'allreduce', ranks: 8, size: M, bound: 1.0, higherIsBetter: false, args: ['-m', '1M:1M'] },
  { what: 'bcast 1 MiB', name: 'bcast', ranks: 8, size: M, bound: 1.0, higherIsBetter: false, args: ['-m', '1M:1M'] },
];

const argv = process.argv.slice(2);
const rounds = argv.includes('--rounds') ? Number(argv[argv.indexOf('--rounds') + 1]) : 3;
const lines = [
  '| operation | ranks | mprun | Open MPI | mprun / Open MPI | target | met |',
  '| --- | --- | --- | --- | --- | --- | --- |',
];
try {
  for (const t of TARGETS) {
    const c = compare([t.name, '-n', String(t.ranks), '--rounds', String(rounds), ...(t.against ? ['--against', t.against] : []), ...t.args]);
    const row = c.rows.find((r) => r.size === t.size);
    if (row === undefined) throw new CompareError(`no figure for size ${t.size} of ${t.name}`);
    const unit = c.unit === 'us' ? ' us' : ' MB/s';
    const met = t.higherIsBetter ? row.ratio >= t.bound : row.ratio <= t.bound;
    lines.push(`| ${t.what} | ${t.ranks} | ${row.mprun.toFixed(2)}${unit} | ${row.peer.toFixed(2)}${unit} | ${row.ratio.toFixed(2)} | ${t.higherIsBetter ? '>=' : '<='} ${t.bound.toFixed(1)} | ${met ? 'yes' : 'no'} |`);
    process.stderr.write(`${lines[lines.length - 1]}\n`);
  }
} catch (e) {
  process.stderr.write(`targets: ${(e as Error).message}\n`);
  process.exit(e instanceof CompareError ? 2 : 1);
}
process.stdout.write(`${lines.join('\n')}\n`);
