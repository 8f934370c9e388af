/**
 * mprun against Open MPI, side by side in one run.
 *
 *   npm run compare -- NAME -n N [--rounds R] [--against PEER_NAME] [--plot FILE.svg] [--json] [osu options]
 *
 * Builds bench/peers/osu_peer.c with mpicc (once, into build/peers/), then
 * runs `mprun -n N bench/osu.ts NAME --json` and `mpirun -np N osu_peer NAME`
 * alternately, R rounds (default 3), and prints per size both medians and the
 * ratio mprun / Open MPI (below 1 is better for latencies, above 1 for
 * bandwidths). --against compares with another of the peer's benchmarks
 * (e.g. put_bw against bw). Both get the same binding: a core per rank when
 * ranks do not outnumber cores, none (and --oversubscribe) otherwise.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { logLogChart } from './plot.js';

interface Row {
  benchmark: string;
  size: number;
  value: number;
  iterations?: number;
  /** The cold figure (latency, barrier, allreduce): the first calls right after init. */
  cold?: boolean;
}

export const root = [resolve(dirname(fileURLToPath(import.meta.url)), '..'), resolve(dirname(fileURLToPath(import.meta.url)), '../..')].find((p) => existsSync(join(p, 'binding.gyp')))!;

const BANDWIDTH = new Set(['bw', 'bibw', 'put_bw', 'get_bw']);

export class CompareError extends Error {}

function fail(message: string): never {
  throw new CompareError(message);
}

/** Builds a peer program of bench/peers/ (NAME.c) if it is missing or older than its source. */
export function buildPeer(name = 'osu_peer'): string {
  const src = join(root, 'bench', 'peers', `${name}.c`);
  const out = join(root, 'build', 'peers', name);
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(dirname(out), { recursive: true });
  const r = spawnSync('mpicc', ['-O2', '-o', out, src], { encoding: 'utf8' });
  if (r.error) fail(`cannot run mpicc (${r.error.message}): install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev)`);
  if (r.status !== 0) fail(`mpicc failed:\n${r.stderr}`);
  return out;
}

function parseRows(text: string, what: string): Row[] {
  const rows: Row[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      rows.push(JSON.parse(line) as Row);
    } catch {
      fail(`${what} printed a line that is not JSON: ${line}`);
    }
  }
  if (rows.length === 0) fail(`${what} printed no results`);
  return rows;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, what: string): Row[] {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, cwd: root, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) fail(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${what} failed (exit ${r.status}):\n${r.stderr}`);
  return parseRows(r.stdout, what);
}

/** mpirun's binding as mprun's default: a core per rank when ranks do not outnumber cores, else none. */
export function mpirunBinding(ranks: number): string[] {
  return ranks <= cpus().length ? ['--bind-to', 'core'] : ['--bind-to', 'none', '--oversubscribe'];
}

/** mpirun's environment: allowed as root, shared memory (vader) unless OMPI_MCA_btl says otherwise. */
export function mpirunEnv(): NodeJS.ProcessEnv {
  return { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_btl: process.env.OMPI_MCA_btl ?? 'self,vader' };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface Comparison {
  name: string;
  against: string;
  ranks: number;
  rounds: number;
  unit: string;
  rows: Array<{ size: number; mprun: number; peer: number; ratio: number }>;
  /** latency, barrier, allreduce: the first calls right after init (medians over rounds). */
  cold?: { size: number; iterations: number; mprun: number; peer: number; ratio: number };
}

export function compare(argv: readonly string[]): Comparison {
  const name = argv[0];
  if (name === undefined || name.startsWith('-')) fail('usage: compare NAME -n N [--rounds R] [--against PEER_NAME] [--plot FILE.svg] [--json] [osu options]');
  let ranks = 2;
  let rounds = 3;
  let against = name;
  const osu: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => argv[++i] ?? fail(`${a} needs a value`);
    if (a === '-n' || a === '-np') ranks = Number(next());
    else if (a === '--rounds') rounds = Number(next());
    else if (a === '--against') against = next();
    else if (a === '--plot' || a === '--json') {
      if (a === '--plot') i++;
    } else if (['-m', '-i', '-x', '-W', '--cold'].includes(a)) osu.push(a, next());
    else fail(`unknown option ${a}`);
  }
  if (!Number.isInteger(ranks) || ranks < 1) fail('-n takes a positive number of ranks');
  if (!Number.isInteger(rounds) || rounds < 1) fail('--rounds takes a positive number');
  const peer = buildPeer();
  const bind = mpirunBinding(ranks);
  const env = mpirunEnv();
  const ours: Row[][] = [];
  const theirs: Row[][] = [];
  for (let r = 0; r < rounds; r++) {
    process.stderr.write(`round ${r + 1}/${rounds}: mprun ${name}, then Open MPI ${against}\n`);
    ours.push(run(process.execPath, [join(root, 'bin', 'mprun.js'), '-n', String(ranks), join(root, 'bench', 'osu.ts'), name, '--json', ...osu], process.env, `mprun ${name}`));
    theirs.push(run('mpirun', ['-np', String(ranks), ...bind, peer, against, ...osu], env, `Open MPI ${against}`));
  }
  const coldOurs = ours.flat().filter((x) => x.cold === true);
  const coldTheirs = theirs.flat().filter((x) => x.cold === true);
  let cold: Comparison['cold'];
  if (coldOurs.length > 0 && coldTheirs.length > 0) {
    const m = median(coldOurs.map((x) => x.value));
    const p = median(coldTheirs.map((x) => x.value));
    cold = { size: coldOurs[0]!.size, iterations: coldOurs[0]!.iterations ?? 0, mprun: m, peer: p, ratio: m / p };
  }
  for (const list of [ours, theirs]) for (const rows of list) rows.splice(0, rows.length, ...rows.filter((x) => x.cold !== true));
  const sizes = [...new Set(ours.flat().map((x) => x.size))].filter((s) => theirs.flat().some((t) => t.size === s)).sort((a, b) => a - b);
  const rows = sizes.map((size) => {
    const m = median(ours.flat().filter((x) => x.size === size).map((x) => x.value));
    const p = median(theirs.flat().filter((x) => x.size === size).map((x) => x.value));
    return { size, mprun: m, peer: p, ratio: m / p };
  });
  return { name, against, ranks, rounds, unit: BANDWIDTH.has(name) ? 'MB/s' : 'us', rows, ...(cold !== undefined ? { cold } : {}) };
}

export function formatComparison(c: Comparison): string {
  const lines = [
    `# mprun ${c.name} vs Open MPI ${c.against}, ${c.ranks} ranks, medians of ${c.rounds} alternating rounds`,
    `# ratio = mprun / Open MPI (${c.unit === 'us' ? 'below 1: mprun faster' : 'above 1: mprun faster'})`,
    `${'# Size'.padEnd(10)}${`mprun (${c.unit})`.padStart(18)}${`Open MPI (${c.unit})`.padStart(20)}${'ratio'.padStart(10)}`,
  ];
  for (const r of c.rows) lines.push(`${String(r.size).padEnd(10)}${r.mprun.toFixed(2).padStart(18)}${r.peer.toFixed(2).padStart(20)}${r.ratio.toFixed(2).padStart(10)}`);
  if (c.cold !== undefined) {
    const k = c.cold;
    lines.push(`# cold, size ${k.size} (the first ${k.iterations} calls right after init, no warm-up): mprun ${k.mprun.toFixed(2)} us, Open MPI ${k.peer.toFixed(2)} us, ratio ${k.ratio.toFixed(2)}`);
  }
  return lines.join('\n') + '\n';
}

export function plotComparison(c: Comparison): string {
  return logLogChart(
    [
      { name: `mprun ${c.name}`, color: '#d62728', points: c.rows.map((r) => ({ x: r.size, y: r.mprun })) },
      { name: `Open MPI ${c.against}`, color: '#1f77b4', points: c.rows.map((r) => ({ x: r.size, y: r.peer })) },
    ],
    { title: `${c.name}: mprun vs Open MPI, ${c.ranks} ranks (medians of ${c.rounds})`, xLabel: 'message size (bytes)', yLabel: c.unit === 'us' ? 'latency (us)' : 'bandwidth (MB/s)' },
  );
}

const invoked = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invoked) {
  const argv = process.argv.slice(2);
  try {
    const c = compare(argv);
    const plotAt = argv.indexOf('--plot');
    if (argv.includes('--json')) process.stdout.write(JSON.stringify(c) + '\n');
    else process.stdout.write(formatComparison(c));
    if (plotAt >= 0) {
      const file = argv[plotAt + 1] ?? fail('--plot needs a file');
      writeFileSync(file, plotComparison(c));
      process.stderr.write(`wrote ${file}\n`);
    }
  } catch (e) {
    process.stderr.write(`compare: ${(e as Error).message}\n`);
    process.exit(e instanceof CompareError ? 2 : 1);
  }
}
