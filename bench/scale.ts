/**
 * `npm run scale [-- --nodes 1,2,4,8 --slots 2 --rounds 3 --net tcp|ucx]`
 * (root: it builds the namespace cluster of the tests, one network namespace
 * with sshd per node, on this machine). Issue 12, item 5: how mprun grows with
 * the node count.
 *
 * For each node count N (SLOTS ranks per node, `--host node1:S,...,nodeN:S`,
 * launched over ssh):
 *   - launch: the wall time of the whole mprun command of bench/scale/app.ts
 *     launch (init, barrier, finalize), and, as the reference, the same
 *     command with the largest job's ranks all on node1;
 *   - barrier, 8-byte and 1 MiB allreduce: the median call (largest over the
 *     ranks) of bench/scale/app.ts coll;
 *   - messages and bytes per rank per collective from the collective counters
 *     (runtime/coll/stats.ts): the most any rank sent (a node leader), over
 *     the network and in all (network + to its node's members);
 *   - the wire-up per rank (issue 12.4): cards of other nodes' ranks fetched
 *     on first use, links opened to their agents, bytes mprun's controller
 *     sent (the most and the mean over the ranks).
 * Node counts alternate within each round; figures are medians over the rounds.
 *
 * Then the issue's checks: launch on the most nodes <= 3x the same ranks on
 * one node; messages per rank per collective grow as log2(nodes) (a least
 * squares fit of a + b*log2(N) to the measured network messages, and the
 * counts the schedules predict), and the fit extrapolated to 1,000 nodes x 64
 * ranks.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster } from './cluster.js';

const root = [resolve(dirname(fileURLToPath(import.meta.url)), '..'), resolve(dirname(fileURLToPath(import.meta.url)), '../..')].find((p) => existsSync(join(p, 'binding.gyp')))!;

const OPS = ['barrier', 'allreduce8', 'allreduce1M'] as const;
type Op = (typeof OPS)[number];
const OP_NAME: Record<Op, string> = { barrier: 'barrier', allreduce8: 'allreduce 8 B', allreduce1M: 'allreduce 1 MiB' };
const MIB = 1024 * 1024;

interface CollRow {
  op: Op;
  us: number;
  counted: boolean;
  messages: number;
  bytes: number;
  remoteMessages: number;
  remoteBytes: number;
  meanRemoteMessages: number;
}

/** What the wire-up cost per rank (bench/scale/app.ts's last line; issue 12.4). */
interface WireRow {
  localCards: number;
  maxFetched: number;
  meanFetched: number;
  maxLinks: number;
  meanLinks: number;
  maxControlBytes: number;
  meanControlBytes: number;
}

interface Options {
  nodes: number[];
  slots: number;
  rounds: number;
  iters: number;
  skip: number;
  largeIters: number;
  largeSkip: number;
  net: 'tcp' | 'ucx';
}

function options(argv: readonly string[]): Options {
  const o: Options = { nodes: [1, 2, 4, 8], slots: 2, rounds: 3, iters: 100, skip: 10, largeIters: 10, largeSkip: 2, net: 'tcp' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    const num = (): number => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${a} takes a whole number, not '${v}'`);
      i++;
      return n;
    };
    if (a === '--nodes') {
      o.nodes = (v ?? '').split(',').map(Number);
      if (o.nodes.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--nodes takes node counts like 1,2,4,8, not '${v}'`);
      i++;
    } else if (a === '--slots') o.slots = Math.max(1, num());
    else if (a === '--rounds') o.rounds = Math.max(1, num());
    else if (a === '--iters') o.iters = Math.max(1, num());
    else if (a === '--skip') o.skip = num();
    else if (a === '--large-iters') o.largeIters = Math.max(1, num());
    else if (a === '--large-skip') o.largeSkip = num();
    else if (a === '--net') {
      if (v !== 'tcp' && v !== 'ucx') throw new Error(`--net takes tcp or ucx, not '${v}'`);
      o.net = v;
      i++;
    } else throw new Error(`unknown option ${a} (--nodes --slots --rounds --iters --skip --large-iters --large-skip --net)`);
  }
  return o;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** ceil(log2 p) and the largest power of two not above p. */
const ceilLog2 = (p: number): number => Math.ceil(Math.log2(p) - 1e-12);
const floorPow2 = (p: number): number => 2 ** Math.floor(Math.log2(p) + 1e-12);

/**
 * What the schedules of runtime/coll (msg.ts, msg-reduce.ts) make the busiest
 * node leader send over the network per collective among P nodes: a
 * dissemination barrier (ceil lg P), recursive doubling with the fold of the
 * leaders beyond q = floorPow2(P) (lg q, + 1 for the result handed back), and
 * Rabenseifner (2 lg q, + 1), whose payload is 2 (q - 1) / q n (+ n handed back).
 */
function scheduled(op: Op, p: number): { messages: number; payload: number } {
  if (p <= 1) return { messages: 0, payload: 0 };
  const q = floorPow2(p);
  const lq = Math.log2(q);
  const fold = p > q ? 1 : 0;
  if (op === 'barrier') return { messages: ceilLog2(p), payload: 0 };
  if (op === 'allreduce8') return { messages: lq + fold, payload: 8 * (lq + fold) };
  return { messages: 2 * lq + fold, payload: (2 * (q - 1) * MIB) / q + fold * MIB };
}

/** Least squares y = a + b x. */
function fit(xs: readonly number[], ys: readonly number[]): { a: number; b: number; worst: number } {
  const n = xs.length;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  const b = sxx === 0 ? 0 : sxy / sxx;
  const a = my - b * mx;
  const worst = Math.max(0, ...xs.map((x, i) => Math.abs(a + b * x - ys[i]!)));
  return { a, b, worst };
}

function hosts(n: number, slots: number): string {
  return Array.from({ length: n }, (_, i) => `node${i + 1}:${slots}`).join(',');
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const most = Math.max(...o.nodes);
  const load0 = loadavg();
  process.stderr.write(`scale: building ${most} namespace nodes (load ${load0.map((x) => x.toFixed(2)).join(' ')})\n`);
  const cluster = await startCluster(most, o.slots);
  const env = { ...process.env, MPRUN_SSH_ARGS: `-F ${cluster.sshConfig}` };
  const net = o.net === 'ucx' ? ['--net', 'ucx', '-x', 'UCX_TLS=tcp', '-x', 'UCX_NET_DEVICES=eth0'] : ['--net', 'tcp'];
  const appPath = join(root, 'bench', 'scale', 'app.ts');
  const mprun = (args: string[]): { ms: number; out: string } => {
    const t0 = performance.now();
    // No binding: the namespace nodes share this machine's cores, and a binding per node puts
    // local rank 0 of every node on core 0.
    const r = spawnSync(process.execPath, [join(root, 'bin', 'mprun.js'), '--bind-to', 'none', ...net, '--timeout', '600', ...args], { encoding: 'utf8', env, cwd: root, maxBuffer: 16 * MIB, timeout: 700_000 });
    const ms = performance.now() - t0;
    if (r.error) throw new Error(`cannot run mprun: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`mprun ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}\n${r.stdout}`);
    return { ms, out: r.stdout };
  };
  const launch: Map<number, number[]> = new Map(o.nodes.map((n) => [n, []]));
  const oneNode: number[] = [];
  const coll: Map<number, CollRow[][]> = new Map(o.nodes.map((n) => [n, []]));
  const wire: Map<number, WireRow[]> = new Map(o.nodes.map((n) => [n, []]));
  const loads: number[] = [load0[0]!];
  try {
    // The rank bundle is compiled (and cached) by the first job: not a launch to time.
    mprun(['--host', hosts(1, o.slots), appPath, 'launch']);
    for (let k = 0; k < o.rounds; k++) {
      loads.push(loadavg()[0]!);
      for (const n of o.nodes) {
        process.stderr.write(`scale: round ${k + 1}/${o.rounds}, ${n} node(s) x ${o.slots}\n`);
        launch.get(n)!.push(mprun(['--host', hosts(n, o.slots), appPath, 'launch']).ms);
        const out = mprun(['--host', hosts(n, o.slots), appPath, 'coll', String(o.iters), String(o.skip), String(o.largeIters), String(o.largeSkip)]).out;
        const rows = out
          .split('\n')
          .filter((l) => l.startsWith('{') && !l.startsWith('{"op":"wireup"'))
          .map((l) => JSON.parse(l) as CollRow);
        for (const op of OPS) if (!rows.some((r) => r.op === op)) throw new Error(`${n} nodes: the app printed no ${op} line:\n${out}`);
        coll.get(n)!.push(rows);
        const wl = out.split('\n').find((l) => l.startsWith('{"op":"wireup"'));
        if (wl !== undefined) wire.get(n)!.push(JSON.parse(wl) as WireRow);
      }
      if (most > 1) {
        process.stderr.write(`scale: round ${k + 1}/${o.rounds}, ${most * o.slots} ranks on node1\n`);
        oneNode.push(mprun(['--host', `node1:${most * o.slots}`, appPath, 'launch']).ms);
      }
    }
  } finally {
    cluster.stop();
  }
  loads.push(loadavg()[0]!);

  const fig = (n: number, op: Op, k: keyof CollRow): number => median(coll.get(n)!.map((rows) => rows.find((r) => r.op === op)![k] as number));
  const counted = [...coll.values()].every((rounds) => rounds.every((rows) => rows.every((r) => r.counted)));
  const fmtBytes = (b: number): string => (b >= 100_000 ? `${(b / MIB).toFixed(2)} MiB` : `${Math.round(b)} B`);
  const cnt = (n: number, op: Op): string => (counted ? `${fig(n, op, 'remoteMessages')} / ${fig(n, op, 'messages')}` : 'n/a');
  const byt = (n: number, op: Op): string => (counted ? `${fmtBytes(fig(n, op, 'remoteBytes'))} / ${fmtBytes(fig(n, op, 'bytes'))}` : 'n/a');
  const lines: string[] = [];
  lines.push(`mprun across namespace nodes (--net ${o.net}), ${o.slots} ranks per node; medians of ${o.rounds} alternating round(s); collectives: ${o.iters} calls (${o.largeIters} for 1 MiB) after ${o.skip} (${o.largeSkip}) untimed, the median call, largest over the ranks; load average (1 min) ${loads.map((x) => x.toFixed(1)).join(' -> ')} on ${cpus().length} cores`);
  lines.push('');
  lines.push('Messages and bytes per rank per collective: the most any rank sent, over the network / in all (network + its node\'s members), from the collective counters.');
  lines.push('');
  lines.push('| nodes | ranks | launch (ms) | barrier (us) | allreduce 8 B (us) | allreduce 1 MiB (us) | msgs barrier | msgs allreduce 8 B | msgs allreduce 1 MiB | bytes allreduce 8 B | bytes allreduce 1 MiB |');
  lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const n of o.nodes) {
    lines.push(
      `| ${n} | ${n * o.slots} | ${median(launch.get(n)!).toFixed(0)} | ${fig(n, 'barrier', 'us').toFixed(1)} | ${fig(n, 'allreduce8', 'us').toFixed(1)} | ${fig(n, 'allreduce1M', 'us').toFixed(0)} | ${cnt(n, 'barrier')} | ${cnt(n, 'allreduce8')} | ${cnt(n, 'allreduce1M')} | ${byt(n, 'allreduce8')} | ${byt(n, 'allreduce1M')} |`,
    );
  }
  if (most > 1) lines.push(`| 1 (reference) | ${most * o.slots} | ${median(oneNode).toFixed(0)} | | | | | | | | |`);
  lines.push('');

  // Launch target.
  if (most > 1) {
    const ratio = median(launch.get(most)!) / median(oneNode);
    lines.push(`Launch: ${most * o.slots} ranks on ${most} nodes ${median(launch.get(most)!).toFixed(0)} ms vs ${most * o.slots} ranks on one node ${median(oneNode).toFixed(0)} ms: ${ratio.toFixed(2)}x (target <= 3x): ${ratio <= 3 ? 'met' : 'NOT met'}`);
  }
  // Growth of messages.
  if (!counted) {
    lines.push('Messages: the runtime has no collective counters (runtime/coll/stats.ts): not counted.');
  } else {
    const xs = o.nodes.map((n) => Math.log2(n));
    let allLog = true;
    const fits: string[] = [];
    for (const op of OPS) {
      const ys = o.nodes.map((n) => fig(n, op, 'remoteMessages'));
      const f = fit(xs, ys);
      const exact = o.nodes.every((n, i) => ys[i] === scheduled(op, n).messages);
      // log2 growth: the fit of a + b*log2(N) leaves less than half a message anywhere.
      const log = f.worst < 0.5;
      allLog &&= log;
      const at = (p: number): number => f.a + f.b * Math.log2(p);
      fits.push(
        `  ${OP_NAME[op]}: network messages per rank = ${f.a.toFixed(2)} + ${f.b.toFixed(2)} * log2(nodes) (worst residual ${f.worst.toFixed(2)}); the schedule's count ${exact ? 'matches' : 'DIFFERS from'} every measured point; at 1000 nodes: fit ${at(1000).toFixed(1)}, schedule ${scheduled(op, 1000).messages}`,
      );
    }
    lines.push(`Messages per rank per collective grow as log2 of the node count: ${allLog ? 'met' : 'NOT met'}`);
    lines.push(...fits);
    const big = o.nodes.filter((n) => n > 1);
    if (big.length > 0) {
      lines.push(
        `  allreduce 1 MiB network bytes per leader / Rabenseifner's 2 (P - 1) / P n: ${big.map((n) => `${n} nodes ${(fig(n, 'allreduce1M', 'remoteBytes') / scheduled('allreduce1M', n).payload).toFixed(3)}`).join(', ')}`,
      );
    }
  }
  // Wire-up (issue 12.4): cards and links per rank, after every collective above (a list, not a
  // table: the collective table above is the only one whose rows start with a node count).
  if (o.nodes.every((n) => wire.get(n)!.length > 0)) {
    const wf = (n: number, k: keyof WireRow): number => median(wire.get(n)!.map((r) => r[k]));
    lines.push('');
    lines.push("Wire-up per rank after the runs (issue 12.4): its node's cards at init; other nodes' cards fetched on first use and links opened to their agents, the most (a node leader) / the mean; bytes mprun's controller sent, the most / the mean:");
    for (const n of o.nodes) {
      lines.push(`  ${n} node(s) x ${o.slots}: node cards ${wf(n, 'localCards')}; cards fetched ${wf(n, 'maxFetched')} / ${wf(n, 'meanFetched')}; links opened ${wf(n, 'maxLinks')} / ${wf(n, 'meanLinks')}; bytes from mprun ${wf(n, 'maxControlBytes')} / ${wf(n, 'meanControlBytes')}`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`scale: ${(e as Error).message}\n`);
  process.exit(1);
});
