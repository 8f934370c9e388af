/**
 * The scale benchmark's program (bench/scale.ts).
 *
 *   mprun ... bench/scale/app.ts launch     init, barrier, finalize (its wall time is the launch figure)
 *   mprun ... bench/scale/app.ts coll [ITERS SKIP LARGE_ITERS LARGE_SKIP]
 *
 * coll times, one call at a time, barriers, 8-byte allreduces (one float64
 * sum) and 1 MiB allreduces (131072 float64 sums); every call but barrier is
 * followed by an untimed barrier, as osu_allreduce does. Each rank takes the
 * median of its calls; the figure is the largest median over the ranks. Around
 * each timed call it reads the collective counters of runtime/coll/stats.ts
 * (on globalThis under Symbol.for('mprun.coll.stats')): what this rank sent
 * for the collectives alone. Rank 0 prints one JSON line per collective:
 *
 *   {"op","us","iterations","counted","messages","bytes","remoteMessages","remoteBytes","meanRemoteMessages"}
 *
 * messages/bytes are per call, the most any rank sent (a node leader);
 * remote* count only what went to ranks on other nodes; meanRemoteMessages is
 * the average over the ranks. counted is false when the runtime has no
 * counters (the counts are then -1); on one node, where the shared-memory
 * engine sends no messages and keeps no counters, every count is 0.
 *
 * Last, what the wire-up cost (issue 12.4; Symbol.for('mprun.wireup.stats')),
 * after all the collectives: the most and the mean over the ranks of the cards
 * of other nodes' ranks fetched, the links opened to other nodes' agents and
 * the bytes mprun's controller sent, and the node's cards each rank got at init:
 *
 *   {"op":"wireup","localCards","maxFetched","meanFetched","maxLinks","meanLinks","maxControlBytes","meanControlBytes"}
 */
import { init } from 'mprun';
// Types only (erased): the runtime's own counters, as it keeps them on globalThis.
import type { CollStats } from '../../runtime/coll/stats.js';
import type { WireupStats } from '../../transports/peers.js';

const world = await init();
const [mode = 'coll', ...rest] = process.argv.slice(2);
if (mode === 'launch') {
  await world.barrier();
  if (world.rank === 0) console.log(`launch ok ${world.size} ranks`);
  await world.finalize();
  process.exit(0);
}

const [iters = 200, skip = 20, largeIters = 20, largeSkip = 3] = rest.map(Number);
const key = Symbol.for('mprun.coll.stats');
const counters = (): CollStats | undefined => (globalThis as unknown as Record<symbol, CollStats | undefined>)[key];
const zero: CollStats = { collectives: 0, messages: 0, bytes: 0, remoteMessages: 0, remoteBytes: 0 };
const snap = (): CollStats => ({ ...(counters() ?? zero) });

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function measure(op: string, n: number, warm: number, call: () => Promise<unknown>, separate: boolean, reset?: () => void): Promise<void> {
  const times: number[] = [];
  const sent = { ...zero };
  await world.barrier();
  for (let i = 0; i < n + warm; i++) {
    reset?.();
    const before = snap();
    const t0 = performance.now();
    await call();
    const t = performance.now() - t0;
    const after = snap();
    if (i >= warm) {
      times.push(t * 1000);
      for (const k of Object.keys(sent) as Array<keyof CollStats>) sent[k] += after[k] - before[k];
    }
    if (separate) await world.barrier();
  }
  const us = await world.allreduce(median(times), 'max');
  const per = (k: keyof CollStats): number => sent[k] / n;
  const most = await world.allreduce(new Float64Array([per('messages'), per('bytes'), per('remoteMessages'), per('remoteBytes')]), 'max');
  const meanRemote = (await world.allreduce(per('remoteMessages'), 'sum')) / world.size;
  // One node: the shared-memory engine runs the collectives and sends no messages (it keeps no counters).
  const counted = counters() !== undefined || world.local.size === world.size;
  if (world.rank === 0) {
    const c = (x: number): number => (counted ? Math.round(x * 100) / 100 : -1);
    console.log(
      JSON.stringify({
        op,
        us: Math.round(us * 100) / 100,
        iterations: n,
        counted,
        messages: c(most[0]!),
        bytes: c(most[1]!),
        remoteMessages: c(most[2]!),
        remoteBytes: c(most[3]!),
        meanRemoteMessages: c(meanRemote),
        collectivesPerCall: counted ? sent.collectives / n : -1,
      }),
    );
  }
}

const small = new Float64Array([world.rank + 1]);
const large = new Float64Array(131_072).fill(world.rank + 1);
await measure('barrier', iters, skip, () => world.barrier(), false);
// Allreduce sums in place: the inputs are set again before each (untimed).
await measure('allreduce8', iters, skip, () => world.allreduce(small, 'sum'), true, () => small.fill(world.rank + 1));
await measure('allreduce1M', largeIters, largeSkip, () => world.allreduce(large, 'sum'), true, () => large.fill(world.rank + 1));
// The result is right: the sum of rank + 1 over the ranks.
const want = (world.size * (world.size + 1)) / 2;
const got = await world.allreduce(large.fill(world.rank + 1), 'sum');
if (got[0] !== want || got[131_071] !== want) throw new Error(`1 MiB allreduce gave ${got[0]}, expected ${want}`);

const w = (globalThis as unknown as Record<symbol, WireupStats | undefined>)[Symbol.for('mprun.wireup.stats')];
const mineW = w === undefined ? [-1, -1, -1, -1] : [w.localCards, w.cardsFetched, w.linksOpened, w.controlBytes];
const maxW = await world.allreduce(Float64Array.from(mineW), 'max');
const sumW = await world.allreduce(Float64Array.from(mineW), 'sum');
if (world.rank === 0) {
  const mean = (i: number): number => Math.round((sumW[i]! / world.size) * 100) / 100;
  console.log(JSON.stringify({ op: 'wireup', localCards: maxW[0], maxFetched: maxW[1], meanFetched: mean(1), maxLinks: maxW[2], meanLinks: mean(2), maxControlBytes: maxW[3], meanControlBytes: mean(3) }));
}
await world.finalize();
