/**
 * What users feel: the same plain program (top-level loops right after init,
 * bench/cold-app.ts) on mprun, on Open MPI in C (bench/peers/cold_peer.c) and
 * on mpi4py (bench/peers/cold_peer.py), run alternately, a fresh job per
 * system, operation and round, so that each one starts cold.
 *
 *   npm run cold [-- --rounds R] [--chunks C] [--per P] [--warmup W] [--only KIND@RANKS,...] [--python PYTHON] [--json]
 *
 * Default: 3 rounds of 16 chunks of 500 operations, 8-byte send/recv latency
 * at 2 ranks, barrier and 8-byte allreduce at 2 and 8, each awaited and then
 * in mprun's synchronous forms (KIND-sync). Prints a markdown
 * table: per system the median chunk (over all rounds' cold chunks), the
 * worst chunk (median over rounds of each round's slowest cold chunk) and
 * the steady figure (median chunk after W more untimed operations), in
 * microseconds per operation, then mprun / Open MPI for each. mpi4py's
 * columns say "not installed" when the Python has no mpi4py (Debian:
 * apt-get install python3-mpi4py). Binding as in bench/compare.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPeer, CompareError, median, mpirunBinding, mpirunEnv, root } from './compare.js';

/** The loops; a -sync kind runs mprun's synchronous forms (Open MPI and mpi4py run their one program). */
export type ColdKind = 'latency' | 'barrier' | 'allreduce' | 'latency-sync' | 'barrier-sync' | 'allreduce-sync';
export type System = 'mprun' | 'openmpi' | 'mpi4py';
export const SYSTEMS: readonly System[] = ['mprun', 'openmpi', 'mpi4py'];

export interface ColdCase {
  kind: ColdKind;
  ranks: number;
}

export const DEFAULT_CASES: readonly ColdCase[] = [
  { kind: 'latency', ranks: 2 },
  { kind: 'barrier', ranks: 2 },
  { kind: 'allreduce', ranks: 2 },
  { kind: 'barrier', ranks: 8 },
  { kind: 'allreduce', ranks: 8 },
  { kind: 'latency-sync', ranks: 2 },
  { kind: 'barrier-sync', ranks: 2 },
  { kind: 'allreduce-sync', ranks: 2 },
  { kind: 'barrier-sync', ranks: 8 },
  { kind: 'allreduce-sync', ranks: 8 },
];

/** The program a peer runs for case `kind`: its blocking calls are the same for both of mprun's forms. */
function peerKind(kind: ColdKind): string {
  return kind.replace(/-sync$/, '');
}

export interface ColdOptions {
  rounds: number;
  chunks: number;
  per: number;
  warmup: number;
  cases: readonly ColdCase[];
  python: string;
}

/** One job's output: microseconds per operation, chunk by chunk. */
export interface Run {
  cold: number[];
  steady: number[];
}

export interface Figures {
  /** Median of every round's cold chunks. */
  median: number;
  /** Median over rounds of each round's slowest cold chunk. */
  worst: number;
  /** Median of every round's steady chunks. */
  steady: number;
  runs: Run[];
}

export interface ColdResult extends ColdCase {
  /** undefined: the system is not available (mpi4py not installed). */
  systems: Partial<Record<System, Figures>>;
}

function fail(message: string): never {
  throw new CompareError(message);
}

export const LABEL: Record<ColdKind, string> = {
  latency: 'send/recv latency, 8 B',
  barrier: 'barrier',
  allreduce: 'allreduce 8 B (float64 sum)',
  'latency-sync': 'send/recv latency, 8 B (mprun: sendSync, recvIntoSync)',
  'barrier-sync': 'barrier (mprun: barrierSync)',
  'allreduce-sync': 'allreduce 8 B (mprun: allreduceSync)',
};

/** Debian's python3 (where python3-mpi4py installs) before whatever python3 is first on PATH. */
export function defaultPython(): string {
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

export function hasMpi4py(python: string): boolean {
  return spawnSync(python, ['-c', 'import mpi4py'], { encoding: 'utf8' }).status === 0;
}

export function parseColdArgs(argv: readonly string[]): ColdOptions & { json: boolean } {
  const o = { rounds: 3, chunks: 16, per: 500, warmup: 20000, cases: DEFAULT_CASES, python: defaultPython(), json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => argv[++i] ?? fail(`${a} needs a value`);
    const count = (min: number): number => {
      const v = Number(next());
      if (!Number.isInteger(v) || v < min) fail(`${a} takes an integer >= ${min}`);
      return v;
    };
    if (a === '--rounds') o.rounds = count(1);
    else if (a === '--chunks') o.chunks = count(1);
    else if (a === '--per') o.per = count(1);
    else if (a === '--warmup') o.warmup = count(0);
    else if (a === '--python') o.python = next();
    else if (a === '--json') o.json = true;
    else if (a === '--only') {
      o.cases = next()
        .split(',')
        .map((c) => {
          const m = /^((latency|barrier|allreduce)(?:-sync)?)@(\d+)$/.exec(c);
          if (m === null || Number(m[3]) < (m?.[2] === 'latency' ? 2 : 1)) fail(`--only takes KIND@RANKS,... with KIND latency, barrier or allreduce (-sync: mprun's synchronous forms), not '${c}'`);
          return { kind: m[1] as ColdKind, ranks: Number(m[3]) };
        });
    } else fail(`unknown option ${a}`);
  }
  return o;
}

function runJob(system: System, c: ColdCase, o: ColdOptions, peer: string): Run {
  const kind = system === 'mprun' ? c.kind : peerKind(c.kind);
  const args = [kind, String(o.chunks), String(o.per), String(o.warmup)];
  const [cmd, argv, env] =
    system === 'mprun'
      ? [process.execPath, [join(root, 'bin', 'mprun.js'), '-n', String(c.ranks), join(root, 'bench', 'cold-app.ts'), ...args], process.env]
      : system === 'openmpi'
        ? ['mpirun', ['-np', String(c.ranks), ...mpirunBinding(c.ranks), peer, ...args], mpirunEnv()]
        : ['mpirun', ['-np', String(c.ranks), ...mpirunBinding(c.ranks), o.python, join(root, 'bench', 'peers', 'cold_peer.py'), ...args], mpirunEnv()];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env, cwd: root, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
  const what = `${system} ${c.kind} -n ${c.ranks}`;
  if (r.error) fail(`cannot run ${cmd} for ${what}: ${r.error.message}`);
  if (r.status !== 0) fail(`${what} failed (exit ${r.status ?? r.signal}):\n${r.stderr}`);
  return parseRun(r.stdout + r.stderr, what, { kind: kind as ColdKind, ranks: c.ranks }, o.chunks);
}

/** The chunks a cold-app (or a peer of it) printed for case `c`: its JSON line, checked. */
export function parseRun(output: string, what: string, c: ColdCase, chunks: number): Run {
  const line = output.split('\n').find((l) => l.startsWith('{'));
  if (line === undefined) fail(`${what} printed no result:\n${output}`);
  const parsed = JSON.parse(line) as Run & { kind: string; ranks: number };
  if (parsed.kind !== c.kind || parsed.ranks !== c.ranks || parsed.cold.length !== chunks || parsed.steady.length !== chunks) fail(`${what} printed an unexpected result: ${line}`);
  return { cold: parsed.cold, steady: parsed.steady };
}

/** Median chunk, worst chunk (median over runs of each run's slowest) and steady figure of some runs. */
export function figures(runs: Run[]): Figures {
  return {
    median: median(runs.flatMap((r) => r.cold)),
    worst: median(runs.map((r) => Math.max(...r.cold))),
    steady: median(runs.flatMap((r) => r.steady)),
    runs,
  };
}

/** Runs every case: per round mprun, Open MPI, mpi4py, one after the other. */
export function coldCompare(o: ColdOptions, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): ColdResult[] {
  const peer = buildPeer('cold_peer');
  const systems = SYSTEMS.filter((s) => s !== 'mpi4py' || hasMpi4py(o.python));
  if (!systems.includes('mpi4py')) log(`cold: ${o.python} has no mpi4py (Debian: apt-get install python3-mpi4py); its columns stay empty`);
  return o.cases.map((c) => {
    const runs = new Map<System, Run[]>(systems.map((s) => [s, []]));
    for (let r = 0; r < o.rounds; r++) {
      for (const s of systems) {
        const run = runJob(s, c, o, peer);
        runs.get(s)!.push(run);
        log(`round ${r + 1}/${o.rounds} ${c.kind} -n ${c.ranks} ${s}: cold ${run.cold.map((v) => fmt(v)).join(' ')} | steady median ${fmt(median(run.steady))} us`);
      }
    }
    return { ...c, systems: Object.fromEntries([...runs].map(([s, rs]) => [s, figures(rs)])) };
  });
}

/** Microseconds with three significant figures or two decimals. */
export function fmt(us: number): string {
  return us >= 100 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us.toFixed(2);
}

export function coldTable(results: readonly ColdResult[]): string {
  const name: Record<System, string> = { mprun: 'mprun', openmpi: 'Open MPI', mpi4py: 'mpi4py' };
  const head = ['operation', 'ranks'];
  for (const s of SYSTEMS) head.push(`${name[s]} median`, `${name[s]} worst`, `${name[s]} steady`);
  head.push('median / OMPI (<= 1.0)', 'worst / OMPI (<= 3.0)', 'steady / OMPI (<= 1.0)');
  const lines = [`| ${head.join(' | ')} |`, `|${' --- |'.repeat(head.length)}`];
  for (const r of results) {
    const cells = [LABEL[r.kind], String(r.ranks)];
    for (const s of SYSTEMS) {
      const f = r.systems[s];
      cells.push(...(f === undefined ? ['n/a', 'n/a', 'n/a'] : [fmt(f.median), fmt(f.worst), fmt(f.steady)]));
    }
    const m = r.systems.mprun;
    const p = r.systems.openmpi;
    if (m !== undefined && p !== undefined) cells.push((m.median / p.median).toFixed(2), (m.worst / p.worst).toFixed(2), (m.steady / p.steady).toFixed(2));
    else cells.push('n/a', 'n/a', 'n/a');
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n') + '\n';
}

export function coldHeading(o: ColdOptions): string {
  return `Cold and steady, us per operation (latency: one way): ${o.chunks} chunks of ${o.per} operations right after init, ${o.rounds} alternating rounds; median chunk, worst chunk (median over rounds of each round's slowest), steady (median chunk after ${o.warmup} more).\n`;
}

const invoked = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invoked) {
  try {
    const o = parseColdArgs(process.argv.slice(2));
    const results = coldCompare(o);
    if (o.json) process.stdout.write(JSON.stringify({ options: { ...o, cases: undefined }, results }) + '\n');
    else process.stdout.write(`${coldHeading(o)}\n${coldTable(results)}`);
  } catch (e) {
    process.stderr.write(`cold: ${(e as Error).message}\n`);
    process.exit(e instanceof CompareError ? 2 : 1);
  }
}
