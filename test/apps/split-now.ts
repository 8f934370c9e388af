/**
 * Synchronous collectives on teams whose partners on other nodes were never
 * used (issue 12.4: peers bind on first use): split the world by parity, then
 * at once, without an await in between, split each half again and allocate;
 * the second split's gather meets its partners for the first time inside a
 * synchronous wait, so their cards and links are made blocking. Then an
 * allreduce over the nested team. Then point-to-point with ranks 5 and 3
 * away, never met before: a first sendSync (its destination bound blocking
 * before the message goes), and a send() not awaited before a recvIntoSync
 * (bound inside the synchronous wait: every rank blocks in it, so nothing
 * else would ever post those sends). Prints
 * "split-now ok <rank> <json stats after the splits>" and "split-now p2p
 * <rank> <sync binds before> <after>".
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
const afterSplits = JSON.stringify(stats);
const bindsBefore = stats.syncBinds;
const got = new Float64Array(1);
const away = (k: number): number => (((rank + k) % size) + size) % size;
world.sendSync(away(5), Float64Array.of(rank), 40);
world.recvIntoSync(got, away(-5), 40);
equal(got[0], away(-5), 'a first sendSync to a rank never met');
void world.send(away(3), Float64Array.of(-rank), 41);
world.recvIntoSync(got, away(-3), 41);
equal(got[0], -away(-3), 'a send() not awaited, then recvIntoSync');
console.log(`split-now p2p ${rank} ${bindsBefore} ${stats.syncBinds}`);
await world.barrier();
console.log(`split-now ok ${rank} ${afterSplits}`);
await world.finalize();
