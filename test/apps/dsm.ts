/**
 * Shared variables, holes and semaphores (world.dsm), on one node or many.
 * Prints "dsm ok <rank>".
 */
import { init, MprunError } from 'mprun';
import { check, equal, rejects, throws } from './check.js';

const world = await init();
const { rank, size } = world;

// Every rank writes its own elements of the same pages; a barrier publishes them all.
const v = await world.dsm.share('energy', Float64Array, 1024);
equal(v.data.length, 1024, 'shared length');
check(v.data.every((x) => x === 0), 'shared variables start zeroed');
await world.barrier(); // node peers write into the same copy
for (let i = rank; i < 1024; i += size) v.data[i] = i * 1.5 + 0.25;
await world.barrier();
let all = true;
for (let i = 0; i < 1024; i++) if (v.data[i] !== i * 1.5 + 0.25) all = false;
check(all, 'every rank sees every rank\'s writes to shared pages after a barrier (twins and diffs keep them all)');
check((await world.dsm.share('energy', Float64Array, 1024)) === v, 'sharing the same name again gives the same variable');

// Explicit release/acquire, in rounds: rank r writes element r, everyone reads them all.
for (let round = 1; round <= 3; round++) {
  v.data[rank] = round * 100 + rank;
  await v.release();
  await world.barrier();
  await v.acquire();
  for (let r = 0; r < size; r++) equal(v.data[r], round * 100 + r, `round ${round}: element ${r} after release/acquire`);
  await world.barrier(); // everyone has read before the next round writes
}

// Ranks of one node share one physical copy: a store is visible to node peers at once.
const shared = world.team('shared');
const counts = await world.dsm.share('counts', Int32Array, 4096);
if (shared.rank === 0) counts.data[2000 + shared.worldRanks[0]!] = 42;
await shared.barrier();
equal(counts.data[2000 + shared.worldRanks[0]!], 42, 'ranks of a node share one copy');
await world.barrier();

// Atomics at the element's home: fetchAdd from everyone, on two pages with different homes.
const ROUNDS = 50;
for (let k = 0; k < ROUNDS; k++) {
  await counts.fetchAdd(3, 1);
  await counts.fetchAdd(1024 + 5, 2); // page 1
}
await world.barrier();
equal(await counts.load(3), ROUNDS * size, 'fetchAdd on page 0 is atomic');
equal(await counts.load(1024 + 5), 2 * ROUNDS * size, 'fetchAdd on page 1 is atomic');
equal(counts.data[3], ROUNDS * size, 'a barrier brings atomics into every copy');
const won = await counts.compareSwap(9, 0, rank + 1);
await world.barrier();
const winner = await counts.load(9);
check(winner >= 1 && winner <= size, 'compareSwap installed one rank');
equal((await world.allreduce(won === 0 ? 1 : 0, 'sum')), 1, 'exactly one compareSwap won');
await counts.store(11, 77 + rank);
await world.barrier();
const last = await counts.load(11);
check(last >= 77 && last < 77 + size, 'store is coherent');
const f = await world.dsm.share('floats', Float64Array, 8);
for (let k = 0; k < 10; k++) await f.fetchAdd(0, 0.5);
await world.barrier();
equal(await f.load(0), 5 * size, 'fetchAdd on Float64Array');
const big = await world.dsm.share('big', BigInt64Array, 4);
await big.fetchAdd(1, 3n);
await world.barrier();
equal(await big.load(1), BigInt(3 * size), 'fetchAdd on BigInt64Array');

// A semaphore as a lock: plain read-modify-write of a shared element, consistent under the lock.
const lock = await world.dsm.semaphore('lock', 1);
const tally = await world.dsm.share('tally', Float64Array, 16);
for (let k = 0; k < 5; k++) {
  await lock.wait();
  tally.data[0] += 1;
  await lock.post();
}
await world.barrier();
equal(tally.data[0], 5 * size, 'semaphore-protected increments are not lost');
// A semaphore as a signal: rank 0 waits for every other rank.
const ready = await world.dsm.semaphore('ready', 0);
if (rank !== 0) await ready.post();
else for (let k = 1; k < size; k++) await ready.wait();
await world.barrier();

// Holes: each rank writes a range spanning pages privately, then publishes it in bulk.
const grid = await world.dsm.share('grid', Float64Array, 600 * size);
const hole = grid.hole(rank * 600, 600);
equal(hole.data.length, 600, 'a hole is a private copy of its range');
for (let i = 0; i < 600; i++) hole.data[i] = rank * 10_000 + i;
check(grid.data[rank * 600 + 1] !== rank * 10_000 + 1 || rank * 10_000 + 1 === 0, 'hole writes stay private until fill');
await hole.fill();
await world.barrier();
let holesOk = true;
for (let i = 0; i < 600 * size; i++) if (grid.data[i] !== Math.floor(i / 600) * 10_000 + (i % 600)) holesOk = false;
check(holesOk, 'every filled hole is seen by every rank');
await rejects(() => hole.fill(), MprunError, 'a hole fills once');

// Bad input
await rejects(() => counts.fetchAdd(4096, 1), RangeError, 'atomic past the end');
await rejects(() => counts.fetchAdd(0, 1n as unknown as number), TypeError, 'bigint into Int32Array');
throws(() => grid.hole(600 * size - 1, 2), RangeError, 'hole past the end');
await rejects(() => world.dsm.share('', Float64Array, 1), TypeError, 'empty name');
await rejects(() => world.dsm.share('x', Array as unknown as Float64ArrayConstructor, 1), TypeError, 'not a typed array');

console.log(`dsm ok ${rank}`);
await world.finalize();
