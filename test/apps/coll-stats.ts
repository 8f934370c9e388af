/**
 * What each rank's collectives across nodes sent (runtime/coll/stats.ts): per
 * collective, the messages this rank sent to other nodes, read from the
 * counters on globalThis (Symbol.for('mprun.coll.stats')). Also checks a float
 * allreduce is bitwise the same on every rank. Prints, per rank, one line
 * "stats <rank> <name>=<remote messages> ..." and "coll-stats ok <rank>".
 */
import { init } from 'mprun';
import { check } from './check.js';
import type { CollStats } from '../../runtime/coll/stats.js';

const world = await init();
const { rank, size } = world;
const stats = (): CollStats => {
  const s = (globalThis as unknown as Record<symbol, CollStats | undefined>)[Symbol.for('mprun.coll.stats')];
  check(s !== undefined, 'the counters are on globalThis');
  return { ...s! };
};

await world.barrier();
const out: string[] = [];
const measure = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
  const before = stats();
  await fn();
  const after = stats();
  check(after.collectives === before.collectives + 1, `${name} counts as one collective`);
  out.push(`${name}=${after.remoteMessages - before.remoteMessages}/${after.remoteBytes - before.remoteBytes}`);
};
await measure('barrier', () => world.barrier());
await measure('bcast', () => world.bcast(new Float64Array(8), 0));
await measure('allreduce', () => world.allreduce(new Float64Array(8), 'sum'));
await measure('allreduce1M', () => world.allreduce(new Float64Array(131_072), 'sum'));
await measure('reduce', () => world.reduce(new Float64Array(8), 'sum', 0));
await measure('allgather', () => world.allgather(rank));
console.log(`stats ${rank} ${out.join(' ')}`);

// A float sum whose rounding depends on the fold's grouping: the same bits everywhere.
const x = Float64Array.from({ length: 1000 }, (_, i) => Math.sin(rank * 1000 + i) * 10 ** (i % 17));
await world.allreduce(x, 'sum');
const all = await world.allgather(x);
for (let r = 1; r < size; r++) {
  for (let i = 0; i < x.length; i++) check(Object.is(all[r * x.length + i], all[i]), `allreduce of floats bitwise the same on rank ${r} and rank 0 [${i}]`);
}
console.log(`coll-stats ok ${rank}`);
await world.finalize();
