/**
 * The OSU-style benchmark suite of mprun.
 *   mprun -n 2 bench/osu.ts NAME [-m [min:]max] [-i ITER] [-x WARMUP] [-W WINDOW] [-f] [-c] [--json]
 * NAME: latency, bw, bibw, put_latency, get_latency, put_bw, get_bw, atomic_latency,
 * barrier, bcast, reduce, allreduce, allgather, gather, scatter, alltoall.
 */
import { init } from 'mprun';
import { OsuUsageError, parseOsuArgs, type OsuOptions } from './osu/options.js';
import { bandwidth, latency } from './osu/pt2pt.js';
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
await bench.run(world, opts);
await world.finalize();
