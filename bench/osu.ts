/**
 * The OSU-style benchmark suite of mprun.
 *   mprun -n 2 bench/osu.ts NAME [-m [min:]max] [-i ITER] [-x WARMUP] [-W WINDOW] [-f] [-c] [--json]
 * NAME: latency, bw, bibw, put_latency, get_latency, put_bw, get_bw, atomic_latency,
 * barrier, bcast, reduce, allreduce, allgather, gather, scatter, alltoall.
 */
import { init } from 'mprun';
import { OsuUsageError, parseOsuArgs, type OsuOptions } from './osu/options.js';
import { bandwidth, latency } from './osu/pt2pt.js';
import { reported } from './osu/report.js';
import { atomicLatency, rmaBandwidth, rmaLatency } from './osu/rma.js';
import { collective } from './osu/coll.js';
import type { World } from 'mprun';

type Bench = { run: (w: World, o: OsuOptions) => Promise<void>; minRanks: number; bandwidth: boolean; p2p: boolean };

const coll: Bench = { run: collective, minRanks: 1, bandwidth: false, p2p: false };

const BENCHMARKS: Record<string, Bench> = {
  latency: { run: latency, minRanks: 2, bandwidth: false, p2p: true },
  bw: { run: (w, o) => bandwidth(w, o, false), minRanks: 2, bandwidth: true, p2p: true },
  bibw: { run: (w, o) => bandwidth(w, o, true), minRanks: 2, bandwidth: true, p2p: true },
  atomic_latency: { run: atomicLatency, minRanks: 2, bandwidth: false, p2p: true },
  barrier: coll,
  bcast: coll,
  reduce: coll,
  allreduce: coll,
  allgather: coll,
  gather: coll,
  scatter: coll,
  alltoall: coll,
  put_latency: { run: (w, o) => rmaLatency(w, o, 'put'), minRanks: 2, bandwidth: false, p2p: true },
  get_latency: { run: (w, o) => rmaLatency(w, o, 'get'), minRanks: 2, bandwidth: false, p2p: true },
  put_bw: { run: (w, o) => rmaBandwidth(w, o, 'put'), minRanks: 2, bandwidth: true, p2p: true },
  get_bw: { run: (w, o) => rmaBandwidth(w, o, 'get'), minRanks: 2, bandwidth: true, p2p: true },
};

const world = await init();

/** A usage error: rank 0 stops the job with it (mprun prints it once); the others wait to be stopped. */
async function usage(message: string): Promise<never> {
  if (world.rank === 0) world.abort(2, message);
  await world.barrier();
  process.exit(2);
}

const name = process.argv[2] ?? '';
const bench = BENCHMARKS[name] ?? (await usage(`unknown benchmark '${name}'; one of: ${Object.keys(BENCHMARKS).join(', ')}`));
let opts: OsuOptions;
try {
  opts = parseOsuArgs(process.argv.slice(2), { minSize: bench.p2p ? 0 : 1, maxSize: bench.p2p ? 4 * 1024 * 1024 : 1024 * 1024, bandwidth: bench.bandwidth, collective: !bench.p2p });
} catch (e) {
  if (!(e instanceof OsuUsageError)) throw e;
  opts = await usage(e.message);
}
if (world.size < bench.minRanks) await usage(`${name} needs at least ${bench.minRanks} ranks (mprun -n ${bench.minRanks} bench/osu.ts ${name})`);

// The cold figure: nothing has run since init() but argument parsing.
let cold: { size: number; us: number } | undefined;
if (opts.cold > 0 && (name === 'latency' || name === 'barrier' || name === 'allreduce')) {
  const n = opts.cold;
  const buf = new Uint8Array(8).fill(world.rank + 1);
  const into = new Uint8Array(8);
  const t0 = performance.now();
  if (name === 'barrier') {
    for (let i = 0; i < n; i++) await world.barrier();
  } else if (name === 'allreduce') {
    for (let i = 0; i < n; i++) await world.allreduce(Float64Array.of(i), 'sum');
  } else if (world.rank === 0) {
    for (let i = 0; i < n; i++) {
      await world.send(1, buf, 1);
      await world.recvInto(into, 1, 1);
    }
  } else if (world.rank === 1) {
    for (let i = 0; i < n; i++) {
      await world.recvInto(into, 0, 1);
      await world.send(0, buf, 1);
    }
  }
  cold = { size: name === 'barrier' ? 0 : 8, us: ((performance.now() - t0) * 1000) / (name === 'latency' ? 2 * n : n) };
}

await bench.run(world, opts);

if (cold !== undefined && world.rank === 0) {
  const steady = reported.find((r) => r.size === cold.size)?.value;
  if (opts.json) console.log(JSON.stringify({ benchmark: name, size: cold.size, value: cold.us, iterations: opts.cold, cold: true }));
  else {
    const what = name === 'barrier' ? 'barrier' : name === 'latency' ? '8 B, one way' : '8 B';
    console.log(`# Cold (${what}): ${cold.us.toFixed(2)} us, the first ${opts.cold} calls right after init() from a top-level loop, no warm-up${steady !== undefined ? `; steady: ${steady.toFixed(2)} us` : ''}`);
  }
}
await world.finalize();
