/**
 * `npm run startup [-- -n 8 -r 7 --json]`: how long a whole job of a trivial
 * program takes (issue 10): init, allreduce one number, print, finalize
 * (bench/startup/app.ts), under mprun; the same program in C under Open MPI's
 * mpirun (bench/startup/app.c, built with mpicc into build/peers/); and
 * `mpirun -n N node` of an empty script (the floor: N Node.js processes).
 * The commands run alternately, round after round, and the table gives the
 * median (and minimum) of the rounds: wall time of the whole command, and
 * CPU time of everything it ran (user + system of its waited-for
 * descendants, from the shell's `times`). "first run" is mprun without its
 * compile cache (what every run cost before the cache).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = [resolve(dirname(fileURLToPath(import.meta.url)), '..'), resolve(dirname(fileURLToPath(import.meta.url)), '../..')].find((p) => existsSync(join(p, 'binding.gyp')))!;

interface Sample {
  wall: number;
  cpu: number;
}

interface Case {
  name: string;
  cmd: string[];
  env?: NodeJS.ProcessEnv;
  samples: Sample[];
}

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}

/** The C peer, built when missing or older than its source. */
function cPeer(): string {
  const src = join(root, 'bench', 'startup', 'app.c');
  const out = join(root, 'build', 'peers', 'startup');
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(dirname(out), { recursive: true });
    const r = spawnSync('mpicc', ['-O2', '-o', out, src], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mpicc failed (Open MPI's mpicc is needed: apt-get install libopenmpi-dev): ${r.error?.message ?? r.stderr}`);
  }
  return out;
}

/** Runs `cmd` under sh; wall time here, CPU time of its descendants from `times` (second line: children user, system). */
function measure(c: Case): Sample {
  const line = `${c.cmd.map(shellQuote).join(' ')} >/dev/null; s=$?; times; exit $s`;
  const t0 = performance.now();
  const r = spawnSync('sh', ['-c', line], { encoding: 'utf8', env: { ...process.env, ...c.env }, cwd: root });
  const wall = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${c.name} failed (${r.status}): ${r.stderr}`);
  const times = r.stdout.trim().split('\n').at(-1)!.match(/(\d+)m([\d.]+)s/g) ?? [];
  const secs = times.map((t) => {
    const m = /(\d+)m([\d.]+)s/.exec(t)!;
    return Number(m[1]) * 60 + Number(m[2]);
  });
  return { wall, cpu: (secs[0]! + secs[1]!) * 1000 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const n = option('-n', 8);
const rounds = option('-r', 7);
const json = process.argv.includes('--json');
const bind = n <= cpus().length ? ['--bind-to', 'core'] : ['--bind-to', 'none', '--oversubscribe'];
const mpiEnv = { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_btl: process.env.OMPI_MCA_btl ?? 'self,vader' };
const scratch = mkdtempSync(join(tmpdir(), 'mprun-startup-'));
const empty = join(scratch, 'empty.js');
writeFileSync(empty, '');
// The command as a user runs it (npx mprun, or mprun on the PATH): bin/mprun.js as a program, whose
// first lines are sh's (they start node without NODE_EXTRA_CA_CERTS: bin/mprun.js says why).
const mprun = [join(root, 'bin', 'mprun.js'), '-n', String(n), join(root, 'bench', 'startup', 'app.ts')];
const cases: Case[] = [
  { name: 'mprun', cmd: mprun, samples: [] },
  { name: `mpirun C`, cmd: ['mpirun', '-n', String(n), ...bind, cPeer()], env: mpiEnv, samples: [] },
  { name: `mpirun node (empty script)`, cmd: ['mpirun', '-n', String(n), ...bind, process.execPath, empty], env: mpiEnv, samples: [] },
  { name: 'mprun, first run (no compile cache)', cmd: mprun, env: { MPRUN_NO_COMPILE_CACHE: '1' }, samples: [] },
];
try {
  measure(cases[0]!); // fills the compile cache; warms the page cache for every case
  for (const c of cases.slice(1)) measure(c);
  const load0 = loadavg()[0]!;
  for (let r = 0; r < rounds; r++) for (const c of cases) c.samples.push(measure(c));
  const rows = cases.map((c) => ({
    name: c.name,
    wallMs: median(c.samples.map((s) => s.wall)),
    wallMinMs: Math.min(...c.samples.map((s) => s.wall)),
    cpuMs: median(c.samples.map((s) => s.cpu)),
    cpuMinMs: Math.min(...c.samples.map((s) => s.cpu)),
  }));
  const [ours, theirs] = rows;
  const ratio = { wall: ours!.wallMs / theirs!.wallMs, cpu: ours!.cpuMs / theirs!.cpuMs };
  if (json) {
    process.stdout.write(`${JSON.stringify({ ranks: n, rounds, load: [load0, loadavg()[0]], rows, ratio })}\n`);
  } else {
    process.stdout.write(`startup of a whole job, ${n} ranks, ${rounds} rounds alternating; median (min) in ms; load average ${load0.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}\n\n`);
    process.stdout.write(`| command | wall | CPU |\n| --- | --- | --- |\n`);
    for (const r of rows) process.stdout.write(`| ${r.name} | ${r.wallMs.toFixed(0)} (${r.wallMinMs.toFixed(0)}) | ${r.cpuMs.toFixed(0)} (${r.cpuMinMs.toFixed(0)}) |\n`);
    process.stdout.write(`\nmprun / mpirun C: wall ${ratio.wall.toFixed(2)}x, CPU ${ratio.cpu.toFixed(2)}x\n`);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
