/**
 * Synchronous collectives on teams whose partners on other nodes were never
 * used (issue 12.4: peers bind on first use): split the world by parity, then
 * at once, without an await in between, split each half again and allocate;
 * the second split's gather meets its partners for the first time inside a
 * synchronous wait, so their cards and links are made blocking. Then an
 * allreduce over the nested team. Then point-to-point with ranks 5 and 3
 * away, never met before: a first sendSync, and a send() not awaited before a
 * recvIntoSync, whose endpoints bind inside the synchronous wait (every rank
 * blocks in it, so nothing else would ever post those sends). Prints
 * "split-now ok <rank> <json stats>" and "split-now p2p <rank> <sync binds
 * before> <after>".
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
const stats = (globalThis as unknown as Record<symbol, { syncBinds: number }>)[Symbol.for('mprun.wireup.stats')]!;
const bindsBefore = stats.syncBinds;
const got = new Float64Array(1);
world.sendSync((rank + 5) % size, Float64Array.of(rank), 40);
world.recvIntoSync(got, (rank - 5 + size) % size, 40);
equal(got[0], (rank - 5 + size) % size, 'a first sendSync to a rank never met');
void world.send((rank + 3) % size, Float64Array.of(-rank), 41);
world.recvIntoSync(got, (rank - 3 + size) % size, 41);
equal(got[0], -((rank - 3 + size) % size), 'a send() not awaited, then recvIntoSync');
console.log(`split-now p2p ${rank} ${bindsBefore} ${stats.syncBinds}`);
await world.barrier();
console.log(`split-now ok ${rank} ${JSON.stringify(stats)}`);
await world.finalize();
