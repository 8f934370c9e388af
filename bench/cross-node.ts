/**
 * mprun across nodes, over --net tcp (its own TCP through the node agents) and
 * --net ucx (UCX over its TCP transport on the veth link), against Open MPI
 * over its TCP BTL and Redis, in one run, over the same veth link (needs
 * root: it builds the two-node namespace cluster of the tests, with sshd in
 * each node).
 *
 *   npm run cross-node [-- --rounds R --iters N --ops N --no-osc --no-cold]
 *
 * Every round runs each series once, alternating; the table gives medians
 * of R rounds (default 3):
 *   - mprun `--host node1:1,node2:1 bench/osu.ts NAME` for put_latency
 *     (8-byte put + quiet), get_latency, atomic_latency (fetchAdd), latency
 *     (send/recv ping-pong / 2), put_bw, get_bw and send/recv bw (1 MiB, window 64), with --net tcp
 *     and with --net ucx (-x UCX_TLS=tcp -x UCX_NET_DEVICES=eth0);
 *   - the anchors of issue 12: Open MPI's two-sided osu_latency (8 B) and
 *     osu_bw (1 MiB, window 64) over its TCP BTL (bench/peers/osu_peer.c
 *     latency/bw: `mpirun --host node1,node2 --mca btl tcp,self`, launched
 *     over ssh with the cluster's ssh config; --bind-to none, as mprun's
 *     ranks: the namespace nodes share this machine's cores), and Redis INCR from 4 clients
 *     (redis-benchmark -c 4 -P 1 on node1 to redis-server on node2) against
 *     shared-variable fetchAdd from 4 ranks on node1 to a counter homed on
 *     node2 (bench/dsm-throughput.ts);
 *   - for reference (--no-osc leaves it out): Open MPI's one-sided over TCP
 *     (osc/pt2pt: MPI_Put/MPI_Get/MPI_Fetch_and_op + MPI_Win_flush), which
 *     progresses passive-target operations only when the target enters MPI,
 *     so it runs fewer iterations.
 *   - cold and steady, as bench/cold.ts within a node (issue 10): the plain
 *     program bench/cold-app.ts (latency, barrier, 8-byte allreduce; 16
 *     chunks of 500 operations right after init, then 4000 more untimed and
 *     16 chunks again) with one rank per node, --net tcp and --net ucx, and
 *     its C twin bench/peers/cold_peer.c under Open MPI's TCP BTL, launched
 *     the same way (--no-cold leaves it out).
 * Then the issue's ratios: put+quiet latency (ucx) <= 1.0x osu_latency;
 * 1 MiB put and get bandwidth (ucx) >= 1.0x osu_bw; shared fetchAdd from 4
 * ranks >= 1.0x Redis INCR from 4 clients.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster, type Cluster } from './cluster.js';
import { figures, fmt as fmtUs, LABEL, parseRun, type ColdKind, type Run } from './cold.js';
import { buildPeer, median } from './compare.js';

const root = [resolve(dirname(fileURLToPath(import.meta.url)), '..'), resolve(dirname(fileURLToPath(import.meta.url)), '../..')].find((p) => existsSync(join(p, 'binding.gyp')))!;

/** One measured series: its values per round, and why a round could not run. */
interface Series {
  values: number[];
  error: string | null;
  /** A series that timed out once is not run again (every later round would wait as long). */
  stop: boolean;
}

/** How long one command may take. */
const TIMEOUT_MS = 150_000;

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, cwd: root, maxBuffer: 64 * 1024 * 1024, timeout: TIMEOUT_MS, killSignal: 'SIGKILL' });
  if (r.error) throw new Error((r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT' ? `did not finish in ${TIMEOUT_MS / 1000} s` : `cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

function row(text: string, size: number, what: string): number {
  const r = text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { size: number; value: number; cold?: boolean })
    .find((x) => x.size === size && x.cold !== true);
  if (r === undefined) throw new Error(`${what}: no row for ${size} bytes in:\n${text}`);
  return r.value;
}

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function run(): Promise<void> {
  const rounds = option('--rounds', 3);
  const iters = option('--iters', 2000);
  const ops = option('--ops', 20000);
  const osc = !process.argv.includes('--no-osc');
  const cold = !process.argv.includes('--no-cold');
  const peer = buildPeer();
  const coldPeer = cold ? buildPeer('cold_peer') : '';
  const loads = [loadavg()[0]!];
  const cluster = await startCluster(2, 4);
  const [n1, n2] = cluster.nodes as [Cluster['nodes'][0], Cluster['nodes'][0]];
  const net = `${n1.address.replace(/\.\d+$/, '')}.0/24`;
  const mprunEnv = { ...process.env, MPRUN_SSH_ARGS: `-F ${cluster.sshConfig}` };
  // Open MPI launches its daemons on the nodes over ssh with the cluster's config (plm_rsh_args), as root.
  const ompiEnv = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_plm_rsh_args: `-F ${cluster.sshConfig}` };
  const NETS: Record<'tcp' | 'ucx', string[]> = { tcp: ['--net', 'tcp'], ucx: ['--net', 'ucx', '-x', 'UCX_TLS=tcp', '-x', 'UCX_NET_DEVICES=eth0'] };
  // No binding, for both: each namespace node sees this machine's cores as its own, so a
  // binding per node puts both ranks on core 0 (Open MPI's two-sided latency was then 4 ms,
  // its ranks busy-polling in turns of the scheduler's time slice, instead of 5 us).
  const mprun = (net2: 'tcp' | 'ucx', args: string[]): string => sh(process.execPath, [join(root, 'bin', 'mprun.js'), '--bind-to', 'none', ...NETS[net2], ...args], mprunEnv);
  const mpirun = (pml: string[], args: string[], program = peer): string =>
    sh(
      'mpirun',
      ['-np', '2', '--host', `${n1.name},${n2.name}`, '--bind-to', 'none', '--mca', 'btl', 'tcp,self', '--mca', 'btl_tcp_if_include', net, '--mca', 'oob_tcp_if_include', net, ...pml, '-x', 'OMPI_ALLOW_RUN_AS_ROOT', '-x', 'OMPI_ALLOW_RUN_AS_ROOT_CONFIRM', program, ...args],
      ompiEnv,
    );
  // Cold and steady: per kind and system, the runs of every round.
  const COLD_KINDS: readonly ColdKind[] = ['latency', 'barrier', 'allreduce'];
  const COLD_CHUNKS = 16;
  const coldArgs = (kind: ColdKind): string[] => [kind, String(COLD_CHUNKS), '500', '4000'];
  const coldRuns = new Map<string, Run[]>();
  const attemptCold = (key: string, kind: ColdKind, fn: () => string): void => {
    try {
      const run = parseRun(fn(), key, { kind, ranks: 2 }, COLD_CHUNKS);
      coldRuns.set(key, [...(coldRuns.get(key) ?? []), run]);
    } catch (e) {
      process.stderr.write(`cross-node: ${key} failed: ${(e as Error).message}\n`);
    }
  };

  const series = new Map<string, Series>();
  const attempt = (key: string, fn: () => number): void => {
    const s = series.get(key) ?? { values: [], error: null, stop: false };
    series.set(key, s);
    if (s.stop) return;
    try {
      s.values.push(fn());
    } catch (e) {
      s.error = (e as Error).message;
      s.stop = s.error.startsWith('did not finish');
      process.stderr.write(`cross-node: ${key} failed: ${s.error}\n`);
    }
  };

  // Latency and bandwidth: mprun tcp, mprun ucx, Open MPI two-sided, Open MPI one-sided.
  const latOpts = ['-m', '8:8', '-i', String(iters), '-x', String(Math.ceil(iters / 10))];
  const bwOpts = ['-m', '1048576:1048576'];
  const mprunCases: Array<{ name: string; opts: string[]; size: number }> = [
    { name: 'put_latency', opts: latOpts, size: 8 },
    { name: 'get_latency', opts: latOpts, size: 8 },
    { name: 'atomic_latency', opts: latOpts, size: 1 },
    { name: 'latency', opts: latOpts, size: 8 },
    { name: 'put_bw', opts: bwOpts, size: 1048576 },
    { name: 'get_bw', opts: bwOpts, size: 1048576 },
    { name: 'bw', opts: bwOpts, size: 1048576 },
  ];
  let redis: ReturnType<typeof spawn> | null = null;
  try {
    redis = spawn('ip', ['netns', 'exec', n2.netns, 'redis-server', '--bind', n2.address, '--port', '6399', '--protected-mode', 'no', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    let redisUp = true;
    const until = Date.now() + 10_000;
    while (spawnSync('ip', ['netns', 'exec', n1.netns, 'redis-cli', '-h', n2.address, '-p', '6399', 'ping'], { encoding: 'utf8' }).stdout?.trim() !== 'PONG') {
      if (Date.now() > until) {
        redisUp = false;
        break;
      }
      spawnSync('sleep', ['0.1']);
    }
    for (let k = 0; k < rounds; k++) {
      loads.push(loadavg()[0]!);
      process.stderr.write(`cross-node: round ${k + 1}/${rounds} (load ${loadavg()[0]!.toFixed(1)})\n`);
      for (const c of mprunCases) {
        for (const n of ['tcp', 'ucx'] as const) {
          attempt(`mprun ${n} ${c.name}`, () => row(mprun(n, ['--host', `${n1.name}:1,${n2.name}:1`, join(root, 'bench', 'osu.ts'), c.name, '--json', ...c.opts]), c.size, `mprun --net ${n} ${c.name}`));
        }
      }
      attempt('ompi latency', () => row(mpirun([], ['latency', '-m', '8:8', '-i', String(iters), '-x', String(Math.ceil(iters / 10)), '--cold', '0']), 8, 'Open MPI osu_latency'));
      attempt('ompi bw', () => row(mpirun([], ['bw', ...bwOpts]), 1048576, 'Open MPI osu_bw'));
      if (osc) {
        // osc/pt2pt progresses passive-target operations only when the target enters MPI: 200 of them.
        const few = ['-m', '8:8', '-i', '200', '-x', '20'];
        for (const [name, size, opts] of [['put_latency', 8, few], ['get_latency', 8, few], ['atomic_latency', 1, few], ['put_bw', 1048576, bwOpts], ['get_bw', 1048576, bwOpts]] as const) {
          attempt(`ompi osc ${name}`, () => row(mpirun(['--mca', 'osc', 'pt2pt'], [name, ...opts]), size, `Open MPI ${name} (osc/pt2pt)`));
        }
      }
      if (cold) {
        for (const kind of COLD_KINDS) {
          for (const n of ['tcp', 'ucx'] as const) attemptCold(`mprun ${n} ${kind}`, kind, () => mprun(n, ['--host', `${n1.name}:1,${n2.name}:1`, join(root, 'bench', 'cold-app.ts'), ...coldArgs(kind)]));
          attemptCold(`ompi ${kind}`, kind, () => mpirun([], coldArgs(kind), coldPeer));
        }
      }
      // Shared-variable fetchAdd from 4 ranks on node1 (node2 first: node index 0, the home of the counter's page).
      for (const n of ['tcp', 'ucx'] as const) {
        attempt(`mprun ${n} shared`, () => {
          const out = mprun(n, ['--host', `${n2.name}:1,${n1.name}:4`, '-x', `OPS=${ops}`, join(root, 'bench', 'dsm-throughput.ts')]);
          const m = /fetchAdd ops\/s: ([\d.]+)/.exec(out);
          if (m === null) throw new Error(`dsm-throughput printed no figure:\n${out}`);
          return Number(m[1]);
        });
      }
      attempt('redis incr', () => {
        if (!redisUp) throw new Error('redis-server did not come up on node2 (Debian: redis-server, redis-tools)');
        const csv = sh('ip', ['netns', 'exec', n1.netns, 'redis-benchmark', '-h', n2.address, '-p', '6399', '-c', '4', '-n', String(ops * 4), '-P', '1', '-t', 'incr', '--csv']);
        const line = csv.split('\n').find((l) => l.startsWith('"INCR"'));
        if (line === undefined) throw new Error(`redis-benchmark printed no INCR row:\n${csv}`);
        return Number(line.split(',')[1]!.replace(/"/g, ''));
      });
    }
  } finally {
    if (redis !== null) redis.kill('SIGKILL');
    cluster.stop();
  }
  loads.push(loadavg()[0]!);

  const fmt = (v: number, unit: string): string => (unit === 'us' ? `${v < 100 ? v.toFixed(1) : v.toFixed(0)} us` : unit === 'MB/s' ? `${v.toFixed(0)} MB/s` : `${v.toFixed(0)} ops/s`);
  const value = (key: string): number | null => {
    const s = series.get(key);
    return s === undefined || s.values.length === 0 ? null : median(s.values);
  };
  /** The median, with the rounds that failed; or why none ran (the error's first line; the whole error went to stderr). */
  const cell = (key: string, unit: string): string => {
    const s = series.get(key);
    const v = value(key);
    const why = (s?.error ?? 'not run').split('\n')[0]!.replace(/^.*?(failed \(exit \d+\)|did not finish in \d+ s|cannot run .*)$/, '$1').slice(0, 60);
    if (v === null) return `n/a (${why})`;
    return s!.values.length < rounds ? `${fmt(v, unit)} (${s!.values.length} of ${rounds} rounds; then ${why})` : fmt(v, unit);
  };
  const ratio = (a: string, b: string): number | null => {
    const x = value(a);
    const y = value(b);
    return x === null || y === null ? null : x / y;
  };
  const r2 = (x: number | null): string => (x === null ? 'n/a' : x.toFixed(2));
  const out: string[] = [];
  out.push(`mprun across two namespace nodes (veth + bridge), --net tcp and --net ucx (UCX_TLS=tcp, UCX_NET_DEVICES=eth0), vs Open MPI over its TCP BTL and Redis; medians of ${rounds} alternating rounds; load average (1 min) ${loads.map((x) => x.toFixed(1)).join(' -> ')} on ${cpus().length} cores`);
  out.push('');
  out.push('| operation (across the veth link) | mprun --net tcp | mprun --net ucx | anchor | anchor value | ucx / anchor | tcp / anchor | target (ucx) | met |');
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const rows: Array<{ what: string; key: string; unit: string; anchor: string; anchorKey: string; target: 'le' | 'ge' | null }> = [
    { what: 'put + quiet latency, 8 B', key: 'put_latency', unit: 'us', anchor: 'Open MPI osu_latency (two-sided, TCP BTL)', anchorKey: 'ompi latency', target: 'le' },
    { what: 'get latency, 8 B', key: 'get_latency', unit: 'us', anchor: 'Open MPI osu_latency (two-sided, TCP BTL)', anchorKey: 'ompi latency', target: null },
    { what: 'fetchAdd latency, Int32', key: 'atomic_latency', unit: 'us', anchor: 'Open MPI osu_latency (two-sided, TCP BTL)', anchorKey: 'ompi latency', target: null },
    { what: 'send/recv latency, 8 B (ping-pong / 2)', key: 'latency', unit: 'us', anchor: 'Open MPI osu_latency (two-sided, TCP BTL)', anchorKey: 'ompi latency', target: null },
    { what: 'put bandwidth, 1 MiB', key: 'put_bw', unit: 'MB/s', anchor: 'Open MPI osu_bw (two-sided, TCP BTL)', anchorKey: 'ompi bw', target: 'ge' },
    { what: 'get bandwidth, 1 MiB', key: 'get_bw', unit: 'MB/s', anchor: 'Open MPI osu_bw (two-sided, TCP BTL)', anchorKey: 'ompi bw', target: 'ge' },
    { what: 'send/recv bandwidth, 1 MiB (osu_bw)', key: 'bw', unit: 'MB/s', anchor: 'Open MPI osu_bw (two-sided, TCP BTL)', anchorKey: 'ompi bw', target: null },
    { what: 'shared-variable fetchAdd, 4 ranks', key: 'shared', unit: 'ops/s', anchor: 'Redis INCR, 4 clients', anchorKey: 'redis incr', target: 'ge' },
  ];
  const checks: string[] = [];
  for (const r of rows) {
    const ru = ratio(`mprun ucx ${r.key}`, r.anchorKey);
    const rt = ratio(`mprun tcp ${r.key}`, r.anchorKey);
    const target = r.target === 'le' ? '<= 1.0' : r.target === 'ge' ? '>= 1.0' : '-';
    const met = r.target === null || ru === null ? '-' : (r.target === 'le' ? ru <= 1 : ru >= 1) ? 'yes' : 'no';
    out.push(`| ${r.what} | ${cell(`mprun tcp ${r.key}`, r.unit)} | ${cell(`mprun ucx ${r.key}`, r.unit)} | ${r.anchor} | ${cell(r.anchorKey, r.unit)} | ${r2(ru)} | ${r2(rt)} | ${target} | ${met} |`);
    if (r.target !== null) checks.push(`${r.what} with UCX: ${r2(ru)}x ${r.anchor} (target ${target}): ${met === 'yes' ? 'met' : met === 'no' ? 'NOT met' : 'not measured'}`);
  }
  if (osc) {
    out.push('');
    out.push("For reference, Open MPI's one-sided over TCP (osc/pt2pt; MPI_Win_flush after each operation; 200 operations):");
    out.push('');
    out.push('| operation | Open MPI osc/pt2pt |');
    out.push('| --- | --- |');
    for (const [what, key, unit] of [['put + flush latency, 8 B', 'put_latency', 'us'], ['get latency, 8 B', 'get_latency', 'us'], ['fetch_and_op latency', 'atomic_latency', 'us'], ['put bandwidth, 1 MiB', 'put_bw', 'MB/s'], ['get bandwidth, 1 MiB', 'get_bw', 'MB/s']] as const) {
      out.push(`| ${what} | ${cell(`ompi osc ${key}`, unit)} |`);
    }
  }
  if (cold) {
    out.push('');
    out.push(`Cold and steady across the link, one rank per node (bench/cold-app.ts and its C twin under Open MPI's TCP BTL): us per operation (latency: one way), median chunk / worst chunk / steady over ${COLD_CHUNKS} chunks of 500 operations right after init, per round; worst: median over rounds of each round's slowest chunk:`);
    out.push('');
    out.push('| operation | mprun --net tcp | mprun --net ucx | Open MPI (TCP BTL) | tcp / Open MPI (median, worst, steady) |');
    out.push('| --- | --- | --- | --- | --- |');
    for (const kind of COLD_KINDS) {
      const f = (key: string): ReturnType<typeof figures> | null => {
        const runs = coldRuns.get(key);
        return runs === undefined || runs.length === 0 ? null : figures(runs);
      };
      const text = (x: ReturnType<typeof figures> | null): string => (x === null ? 'n/a' : `${fmtUs(x.median)} / ${fmtUs(x.worst)} / ${fmtUs(x.steady)}`);
      const t = f(`mprun tcp ${kind}`);
      const o = f(`ompi ${kind}`);
      const ratios = t === null || o === null ? 'n/a' : `${(t.median / o.median).toFixed(2)}, ${(t.worst / o.worst).toFixed(2)}, ${(t.steady / o.steady).toFixed(2)}`;
      out.push(`| ${LABEL[kind]} | ${text(t)} | ${text(f(`mprun ucx ${kind}`))} | ${text(o)} | ${ratios} |`);
    }
  }
  out.push('');
  out.push('Issue 12 targets (across the veth link with UCX):');
  for (const c of checks) out.push(`- ${c}`);
  process.stdout.write(out.join('\n') + '\n');
}

run().catch((e: unknown) => {
  process.stderr.write(`cross-node: ${(e as Error).message}\n`);
  process.exit(1);
});
