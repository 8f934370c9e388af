/**
 * The performance targets of the collectives issue, measured against Open MPI
 * in one run (bench/compare.ts, medians of alternating rounds), printed as
 * the markdown table the README keeps: the steady figure, and for latency,
 * barrier and 8-byte allreduce the cold one beside it (the first 500 calls
 * right after init, no warm-up, on both sides). Then what users feel
 * (bench/cold.ts): cold chunks, worst chunk and steady of a plain top-level
 * loop, mprun vs Open MPI vs mpi4py.
 *   npm run targets [-- --rounds R] [--no-cold-table]
 */
import { coldCompare, coldHeading, coldTable, DEFAULT_CASES, defaultPython } from './cold.js';
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
  '| operation | ranks | mprun | Open MPI | mprun / Open MPI | target | met | mprun cold | Open MPI cold | cold ratio |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
];
let coldPart = '';
try {
  for (const t of TARGETS) {
    const c = compare([t.name, '-n', String(t.ranks), '--rounds', String(rounds), ...(t.against ? ['--against', t.against] : []), ...t.args]);
    const row = c.rows.find((r) => r.size === t.size);
    if (row === undefined) throw new CompareError(`no figure for size ${t.size} of ${t.name}`);
    const unit = c.unit === 'us' ? ' us' : ' MB/s';
    const met = t.higherIsBetter ? row.ratio >= t.bound : row.ratio <= t.bound;
    const cold = c.cold !== undefined && c.cold.size === t.size ? [`${c.cold.mprun.toFixed(2)} us`, `${c.cold.peer.toFixed(2)} us`, c.cold.ratio.toFixed(2)] : ['-', '-', '-'];
    lines.push(`| ${t.what} | ${t.ranks} | ${row.mprun.toFixed(2)}${unit} | ${row.peer.toFixed(2)}${unit} | ${row.ratio.toFixed(2)} | ${t.higherIsBetter ? '>=' : '<='} ${t.bound.toFixed(1)} | ${met ? 'yes' : 'no'} | ${cold.join(' | ')} |`);
    process.stderr.write(`${lines[lines.length - 1]}\n`);
  }
  if (!argv.includes('--no-cold-table')) {
    const o = { rounds, chunks: 16, per: 500, warmup: 20000, cases: DEFAULT_CASES, python: defaultPython() };
    coldPart = `\n${coldHeading(o)}\n${coldTable(coldCompare(o))}`;
  }
} catch (e) {
  process.stderr.write(`targets: ${(e as Error).message}\n`);
  process.exit(e instanceof CompareError ? 2 : 1);
}
process.stdout.write(`${lines.join('\n')}\n${coldPart}`);
