/**
 * Synchronous collectives on teams whose partners on other nodes were never
 * used (issue 12.4: peers bind on first use): split the world by parity, then
 * at once, without an await in between, split each half again and allocate;
 * the second split's gather meets its partners for the first time inside a
 * synchronous wait, so their cards and links are made blocking. Then an
 * allreduce over the nested team. Prints "split-now ok <rank> <json stats>".
 */
import { init } from 'mprun';
import { check, equal } from './check.js';

const world = await init();
const { rank, size } = world;
const half = world.split(rank % 2, rank)!;
const nested = half.split(half.rank % 2, half.rank)!;
const members = half.worldRanks.filter((_, i) => i % 2 === half.rank % 2);
equal(nested.worldRanks, members, 'the nested team, made synchronously');
const again = nested.split(0, -nested.rank)!;
equal(again.worldRanks, [...members].reverse(), 'a split of the nested team, made synchronously');
const sum = await again.allreduce(rank, 'sum');
equal(sum, members.reduce((a, b) => a + b, 0), 'allreduce over it');
check(size >= 2, 'a job of two ranks or more');
await world.barrier();
const stats = (globalThis as unknown as Record<symbol, unknown>)[Symbol.for('mprun.wireup.stats')];
console.log(`split-now ok ${rank} ${JSON.stringify(stats)}`);
await world.finalize();
