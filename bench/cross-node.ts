/**
 * mprun across nodes against Open MPI over TCP and Redis, in one run, over
 * the same veth link (needs root: it builds the two-node namespace cluster
 * of the tests, with sshd in each node).
 *
 *   npm run cross-node [-- --rounds R]
 *
 * Rows, medians of R alternating rounds (default 3):
 *   - 8-byte put, get and fetchAdd latency, 1 MiB put and get bandwidth:
 *     `mprun --host node1:1,node2:1 bench/osu.ts NAME` against
 *     `mpirun --host node1,node2 osu_peer NAME` with Open MPI's TCP BTL
 *     (MPI_Put/MPI_Get/MPI_Fetch_and_op + MPI_Win_flush; osc/pt2pt, the one-sided
 *     component that runs over the TCP BTL), both launched over ssh;
 *   - shared-variable fetchAdd throughput from 4 ranks on node1 to an element
 *     homed on node2, against Redis INCR from 4 clients (redis-benchmark) on
 *     node1 to redis-server on node2.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster, type Cluster } from './cluster.js';
import { buildPeer, median } from './compare.js';

const root = [resolve(dirname(fileURLToPath(import.meta.url)), '..'), resolve(dirname(fileURLToPath(import.meta.url)), '../..')].find((p) => existsSync(join(p, 'binding.gyp')))!;

interface Result {
  what: string;
  unit: string;
  higherIsBetter: boolean;
  mprun: number[];
  peer: number[];
  peerName: string;
}

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, cwd: root, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
  if (r.error) throw new Error(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

function rows(text: string): Array<{ size: number; value: number }> {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { size: number; value: number });
}

async function run(): Promise<void> {
  const at = process.argv.indexOf('--rounds');
  const rounds = at >= 0 ? Number(process.argv[at + 1]) : 3;
  const peer = buildPeer();
  const cluster = await startCluster(2, 4);
  const [n1, n2] = cluster.nodes as [Cluster['nodes'][0], Cluster['nodes'][0]];
  const net = `${n1.address.replace(/\.\d+$/, '')}.0/24`;
  const ssh = `ssh -F ${cluster.sshConfig}`;
  const mprunEnv = { ...process.env, MPRUN_SSH_ARGS: `-F ${cluster.sshConfig}` };
  const ompiEnv = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' };
  const mprun = (args: string[]): string => sh(process.execPath, [join(root, 'bin', 'mprun.js'), ...args], mprunEnv);
  const mpirun = (args: string[]): string =>
    sh('mpirun', ['-np', '2', '--host', `${n1.name},${n2.name}`, '--mca', 'plm_rsh_agent', ssh, '--mca', 'btl', 'tcp,self', '--mca', 'osc', 'pt2pt', '--mca', 'btl_tcp_if_include', net, '--mca', 'oob_tcp_if_include', net, '-x', 'OMPI_ALLOW_RUN_AS_ROOT', '-x', 'OMPI_ALLOW_RUN_AS_ROOT_CONFIRM', ...args], ompiEnv);
  const results: Result[] = [];
  const cases: Array<{ what: string; name: string; m: string; row: number; bw: boolean }> = [
    { what: '8-byte put latency', name: 'put_latency', m: '8:8', row: 8, bw: false },
    { what: '8-byte get latency', name: 'get_latency', m: '8:8', row: 8, bw: false },
    { what: 'fetchAdd (Int32) latency', name: 'atomic_latency', m: '8:8', row: 1, bw: false },
    { what: '1 MiB put bandwidth', name: 'put_bw', m: '1048576:1048576', row: 1048576, bw: true },
    { what: '1 MiB get bandwidth', name: 'get_bw', m: '1048576:1048576', row: 1048576, bw: true },
  ];
  let redis: ReturnType<typeof spawn> | null = null;
  try {
    for (const c of cases) {
      const r: Result = { what: c.what, unit: c.bw ? 'MB/s' : 'us', higherIsBetter: c.bw, mprun: [], peer: [], peerName: `Open MPI ${c.name} (TCP)` };
      for (let k = 0; k < rounds; k++) {
        process.stderr.write(`${c.what}: round ${k + 1}/${rounds}\n`);
        const opts = ['-m', c.m, ...(c.bw ? [] : ['-i', '2000', '-x', '200'])];
        const ours = rows(mprun(['--host', `${n1.name}:1,${n2.name}:1`, join(root, 'bench', 'osu.ts'), c.name, '--json', ...opts])).find((x) => x.size === c.row);
        const theirs = rows(mpirun([peer, c.name, ...opts])).find((x) => x.size === c.row);
        if (ours === undefined || theirs === undefined) throw new Error(`${c.name}: no row for ${c.row}`);
        r.mprun.push(ours.value);
        r.peer.push(theirs.value);
      }
      results.push(r);
    }

    // Shared-variable fetchAdd from 4 ranks on node1 against Redis INCR from 4 clients on node1.
    redis = spawn('ip', ['netns', 'exec', n2.netns, 'redis-server', '--bind', n2.address, '--port', '6399', '--protected-mode', 'no', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const until = Date.now() + 10_000;
    while (spawnSync('ip', ['netns', 'exec', n1.netns, 'redis-cli', '-h', n2.address, '-p', '6399', 'ping'], { encoding: 'utf8' }).stdout.trim() !== 'PONG') {
      if (Date.now() > until) throw new Error('redis-server did not come up on node2');
      spawnSync('sleep', ['0.1']);
    }
    const r: Result = { what: 'fetchAdd throughput, 4 ranks (ops/s)', unit: 'ops/s', higherIsBetter: true, mprun: [], peer: [], peerName: 'Redis INCR, 4 clients' };
    for (let k = 0; k < rounds; k++) {
      process.stderr.write(`fetchAdd throughput: round ${k + 1}/${rounds}\n`);
      // node2 first: node index 0 is then node2, the home of the counter's page.
      const out = mprun(['--host', `${n2.name}:1,${n1.name}:4`, '-x', 'OPS=20000', join(root, 'bench', 'dsm-throughput.ts')]);
      const m = /fetchAdd ops\/s: ([\d.]+)/.exec(out);
      if (m === null) throw new Error(`dsm-throughput printed no figure:\n${out}`);
      r.mprun.push(Number(m[1]));
      const csv = sh('ip', ['netns', 'exec', n1.netns, 'redis-benchmark', '-h', n2.address, '-p', '6399', '-c', '4', '-n', '80000', '-P', '1', '-t', 'incr', '--csv']);
      const line = csv.split('\n').find((l) => l.startsWith('"INCR"'));
      if (line === undefined) throw new Error(`redis-benchmark printed no INCR row:\n${csv}`);
      r.peer.push(Number(line.split(',')[1]!.replace(/"/g, '')));
    }
    results.push(r);
  } finally {
    if (redis !== null) redis.kill('SIGKILL');
    cluster.stop();
  }

  process.stdout.write(`# mprun across two namespace nodes (veth + bridge) vs Open MPI over TCP and Redis, medians of ${rounds} alternating rounds\n`);
  process.stdout.write(`${'# what'.padEnd(40)}${'mprun'.padStart(14)}${'peer'.padStart(14)}${'ratio'.padStart(8)}  peer\n`);
  for (const r of results) {
    const m = median(r.mprun);
    const p = median(r.peer);
    process.stdout.write(`${r.what.padEnd(40)}${m.toFixed(2).padStart(14)}${p.toFixed(2).padStart(14)}${(m / p).toFixed(2).padStart(8)}  ${r.peerName} (${r.unit}; ${r.higherIsBetter ? 'higher' : 'lower'} is better)\n`);
  }
}

run().catch((e: unknown) => {
  process.stderr.write(`cross-node: ${(e as Error).message}\n`);
  process.exit(1);
});
