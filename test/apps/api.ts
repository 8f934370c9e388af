/**
 * Exercises every call of the rank API and checks the results; run by the
 * integration tests with 1, 2, 4 and 8 ranks. Prints "api ok <rank>" per rank.
 */
import { init, ANY_SOURCE, ANY_TAG, MprunError } from 'mprun';
import { check, equal, rejects, throws } from './check.js';

const world = await init();
const { rank, size } = world;
const right = (rank + 1) % size;
const left = (rank - 1 + size) % size;

// --- identity ------------------------------------------------------------
check(Number.isInteger(rank) && rank >= 0 && rank < size, 'rank in range');
equal(size, Number(process.env.EXPECT_SIZE ?? size), 'world size');
// On one node every rank is local; across nodes (EXPECT_NODES) the node's ranks are team('shared').
const nodeRanks = world.team('shared').worldRanks;
const sameNode = (p: number): boolean => nodeRanks.includes(p);
const nodes = (await world.allgather(nodeRanks[0]!)) as number[];
equal(new Set(nodes).size, Number(process.env.EXPECT_NODES ?? 1), 'number of nodes');
equal(world.local.size, nodeRanks.length, 'local size is the ranks of this node');
equal(world.local.rank, nodeRanks.indexOf(rank), 'local rank');
check(world.transports()[rank] === 'self', 'self transport for this rank');
for (let p = 0; p < size; p++) {
  // Across nodes: mprun's TCP through the agents (dsm), or UCX with --net ucx.
  const network = process.env.MPRUN_NET === 'ucx' ? 'ucx' : 'dsm';
  if (p !== rank) check(world.transports()[p]!.startsWith(sameNode(p) ? 'xpmem/' : network), `${sameNode(p) ? 'xpmem' : network} transport to ${p}: ${world.transports()[p]}`);
}

// --- symmetric heap: alloc, put, get, ptr --------------------------------
const f = world.alloc(Float64Array, 100);
const i32 = world.alloc(Int32Array, 16);
const i64 = world.alloc(BigInt64Array, 16);
const u8 = world.alloc(Uint8Array, 33);
equal(f.length, 100, 'alloc length');
check(f.every((x) => x === 0), 'alloc zero-fills');
check(f.byteOffset % 64 === 0 && i32.byteOffset % 64 === 0, 'allocations are cache-line aligned');
const usage = world.heapUsage();
check(usage.used >= 800 + 64 + 128 + 64 && usage.size >= usage.used, 'heapUsage counts the allocations');
const empty = world.alloc(Float32Array, 0);
equal(empty.length, 0, 'zero-length allocation');

// put into the right neighbour at an offset; read back with get from the left.
const src = Float64Array.from({ length: 10 }, (_, i) => rank * 1000 + i);
world.put(f, src, right, 5);
src.fill(-1); // src is reusable on return
await world.barrier();
equal(Array.from(f.subarray(5, 15)), Array.from({ length: 10 }, (_, i) => left * 1000 + i), 'put landed at offset');
equal(f[4], 0, 'put did not touch before offset');
equal(f[15], 0, 'put did not touch after range');
const got = await world.get(new Float64Array(10), f, right, 5);
equal(Array.from(got), Array.from({ length: 10 }, (_, i) => rank * 1000 + i), 'get from the right neighbour reads what we put');

// ptr: direct loads and stores into a peer's copy (a node peer's; other nodes' cannot be mapped)
const view = world.ptr(u8, right);
if (sameNode(right)) {
  check(view !== null && view.length === 33, 'ptr gives a view of the same length');
  view![rank % 33] = 200;
} else {
  equal(view, null, 'ptr to a rank on another node is null');
  world.put(u8, Uint8Array.of(200), right, rank % 33);
}
await world.barrier();
equal(u8[left % 33], 200, 'store through ptr is visible to the owner');
check(world.ptr(u8, rank) !== null, 'ptr to self');

// quiet and fence order and complete puts
world.put(u8, Uint8Array.of(1, 2, 3), right, 30);
world.fence();
await world.quiet();
await world.barrier();
equal(Array.from(u8.subarray(30, 33)), [1, 2, 3], 'put completes by quiet + barrier');
await world.barrier(); // every rank has read the first
world.put(u8, Uint8Array.of(4, 5, 6), right, 30);
void world.quiet(); // not awaited: the barrier still completes the puts it flushes
await world.barrier();
equal(Array.from(u8.subarray(30, 33)), [4, 5, 6], 'put completes by a quiet not awaited + barrier');

// putNbi: sources left unchanged until quiet; several in flight at once land whole
const nbi = world.alloc(Float64Array, 4 * 8192);
const parts = [0, 1, 2, 3].map((k) => new Float64Array(8192).fill(rank * 10 + k));
parts.forEach((p, k) => world.putNbi(nbi, p, right, k * 8192));
await world.quiet();
await world.barrier();
for (let k = 0; k < 4; k++) check(nbi.subarray(k * 8192, (k + 1) * 8192).every((x) => x === left * 10 + k), `putNbi part ${k} landed whole`);
throws(() => world.putNbi(nbi, new Float64Array(1), right, 4 * 8192), RangeError, 'putNbi past the end');

// --- bad input raises before a byte moves ------------------------------------
const before = Array.from(f);
throws(() => world.put(f, new Float64Array(96), right, 5), RangeError, 'put past the end');
throws(() => world.put(f, new Float64Array(1), right, -1), RangeError, 'negative offset');
throws(() => world.put(f, new Float64Array(1), right, 1.5), RangeError, 'fractional offset');
throws(() => world.put(f, new Float64Array(1), size), RangeError, 'pe out of range');
throws(() => world.put(f, new Float64Array(1), -1), RangeError, 'negative pe');
throws(() => world.put(f, new Float32Array(1) as unknown as Float64Array, right), TypeError, 'wrong source type');
throws(() => world.put(new Float64Array(4), new Float64Array(1), right), TypeError, 'not a symmetric allocation');
await rejects(() => world.get(new Float64Array(101), f, right), RangeError, 'get past the end');
await rejects(() => world.get(new Int32Array(1) as unknown as Float64Array, f, right), TypeError, 'get into the wrong type');
throws(() => world.alloc(Float64Array, -1), RangeError, 'negative alloc');
throws(() => world.alloc(Array as unknown as Float64ArrayConstructor, 1), TypeError, 'alloc of a non-typed-array');
await world.barrier();
equal(Array.from(f), before, 'rejected puts moved no byte');

// --- atomics ---------------------------------------------------------------
// Every rank adds into rank 0's counters, concurrently, many times.
const ROUNDS = 200;
for (let k = 0; k < ROUNDS; k++) {
  await world.atomics.fetchAdd(i32, 0, 1, 0);
  await world.atomics.add(i64, 0, 2n, 0);
}
await world.barrier();
if (rank === 0) {
  equal(i32[0], ROUNDS * size, 'concurrent fetchAdd (Int32Array)');
  equal(i64[0], BigInt(ROUNDS * size * 2), 'concurrent add (BigInt64Array)');
}
// compareSwap: exactly one rank wins slot 1 on the right neighbour... each rank tries on every pe
for (let pe = 0; pe < size; pe++) await world.atomics.compareSwap(i32, 1, 0, rank + 1, pe);
await world.barrier();
check(i32[1]! >= 1 && i32[1]! <= size, 'compareSwap installed one rank');
// swap / fetch / set
await world.atomics.set(i32, 2, rank * 10, right);
await world.barrier();
equal(i32[2], left * 10, 'set');
equal(await world.atomics.fetch(i32, 2, right), rank * 10, 'fetch');
await world.barrier();
const old = await world.atomics.swap(i64, 3, BigInt(rank), right);
await world.barrier();
equal(i64[3], BigInt(left), 'swap stored');
equal(old, 0n, 'swap returned the old value');
equal(await world.atomics.compareSwap(i64, 3, 999n, 5n, rank), BigInt(left), 'failed compareSwap returns the current value');
await rejects(() => world.atomics.fetchAdd(f as unknown as Int32Array, 0, 1, right), TypeError, 'atomics on Float64Array');
await rejects(() => world.atomics.fetchAdd(i32, 16, 1, right), RangeError, 'atomic index out of range');
await rejects(() => world.atomics.fetchAdd(i64, 0, 1 as unknown as bigint, right), TypeError, 'number into BigInt64Array');
await rejects(() => world.atomics.fetchAdd(i32, 0, 1, size), RangeError, 'atomic pe out of range');
await world.barrier();

// --- waitUntil ----------------------------------------------------------------
// Each rank waits for its left neighbour to set a flag in its memory.
const flag = world.alloc(Int32Array, 8);
const flag64 = world.alloc(BigInt64Array, 2);
await world.atomics.set(flag, 0, 7, right);
await world.waitUntil(flag, 0, '==', 7);
await world.atomics.add(flag64, 0, 5n, right);
// Awaited atomics leave nothing to complete: a synchronous barrier is not refused after them.
world.barrierSync();
await world.waitUntil(flag64, 0, '>=', 5n);
await world.waitUntil(flag, 0, '!=', 0);
await world.waitUntil(flag, 0, '>', 6);
await world.waitUntil(flag, 0, '<', 8);
await world.waitUntil(flag, 0, '<=', 7);
await rejects(() => world.waitUntil(flag, 0, '=~' as '==', 1), TypeError, 'bad comparison');
// waitUntil woken by a plain put, not only by atomics
const data = world.alloc(Float64Array, 1);
await world.barrier();
if (size > 1) {
  if (rank === 0) {
    await new Promise((r) => setTimeout(r, 30)); // let rank 1 fall asleep first
    world.put(data, Float64Array.of(2.5), 1);
  } else if (rank === 1) {
    await world.waitUntil(data, 0, '==', 2.5);
  }
}
await world.barrier();

// --- send / recv -----------------------------------------------------------------
const types = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array] as const;
for (const T of types) {
  const payload = new T(7);
  for (let i = 0; i < 7; i++) payload[i] = (rank + i) % 100;
  await world.send(right, payload, 11);
  const m = await world.recv(left, 11);
  check(m.data instanceof T, `received a ${T.name}`);
  equal(Array.from(m.data as InstanceType<typeof T>), Array.from({ length: 7 }, (_, i) => (left + i) % 100), `${T.name} payload`);
  equal(m.source, left, 'source');
  equal(m.tag, 11, 'tag');
}
await world.send(right, BigInt64Array.of(-1n, BigInt(rank)), 12);
equal((await world.recv(left, 12)).data, BigInt64Array.of(-1n, BigInt(left)), 'BigInt64Array payload');
await world.send(right, BigUint64Array.of(2n ** 64n - 1n), 12);
equal((await world.recv(left, 12)).data, BigUint64Array.of(2n ** 64n - 1n), 'BigUint64Array payload');
// msgpack values, nested typed arrays and bigints
const obj = { from: rank, list: [1, 'two', { three: 3 }], nested: new Float64Array([1.5, 2.5]), big: 2n ** 60n, nil: null };
await world.send(right, obj, 13);
const om = await world.recv<typeof obj>(left, 13);
equal(om.data.from, left, 'object field');
equal(om.data.list, [1, 'two', { three: 3 }], 'object list');
equal(Array.from(om.data.nested), [1.5, 2.5], 'nested typed array');
equal(om.data.big, 2n ** 60n, 'bigint field');
equal(om.data.nil, null, 'null field');
await world.send(right, 'a string', 14);
equal((await world.recv(left, 14)).data, 'a string', 'string message');
await world.send(right, new Uint8Array(0), 15);
equal((await world.recv(left, 15)).data, new Uint8Array(0), 'empty typed array');
await world.send(right, Buffer.from('buf'), 15);
const bm = await world.recv(left, 15);
check(Buffer.isBuffer(bm.data) && bm.data.toString() === 'buf', 'Buffer arrives as Buffer');

// Large messages (rendezvous, single copy), several in flight, both directions.
const big = new Float64Array(300_000).map((_, i) => i * 0.5 + rank);
const sends = [world.send(right, big, 20), world.send(right, big.subarray(1000, 50_000), 21)];
const bigA = await world.recv<Float64Array>(left, 20);
const bigB = await world.recv<Float64Array>(left, 21);
await Promise.all(sends);
equal(bigA.data.length, 300_000, 'large message length');
check(bigA.data[299_999] === 299_999 * 0.5 + left && bigA.data[0] === left, 'large message content');
equal(bigB.data.length, 49_000, 'large subarray message length');
check(bigB.data[0] === 1000 * 0.5 + left, 'large subarray message starts at its offset');
// A large msgpack value
const bigObj = { rows: Array.from({ length: 5000 }, (_, i) => ({ i, s: `row-${i}` })) };
await world.send(right, bigObj, 22);
equal(((await world.recv<typeof bigObj>(left, 22)).data.rows[4999]), { i: 4999, s: 'row-4999' }, 'large msgpack value');

// Both neighbours send many messages before anyone receives: the ring fills,
// senders keep draining, nothing deadlocks; order per pair and tag is kept.
const N = 3000;
const pending: Promise<void>[] = [];
for (let k = 0; k < N; k++) pending.push(world.send(right, Int32Array.of(k, rank), 30 + (k % 2)));
for (let k = 0; k < N; k += 2) equal((await world.recv<Int32Array>(left, 30)).data[0], k, 'order within tag 30');
for (let k = 1; k < N; k += 2) equal((await world.recv<Int32Array>(left, 31)).data[0], k, 'order within tag 31');
await Promise.all(pending);

// recvInto: straight into a buffer of ours, small and large, posted before or after arrival
const intoSmall = new Float64Array(16);
const rs = world.recvInto(intoSmall, left, 60);
await world.send(right, Float64Array.of(1, 2, rank), 60);
const ms = await rs;
equal(Array.from(ms.data), [1, 2, left], 'recvInto: data is the filled prefix');
check(ms.data.buffer === intoSmall.buffer && intoSmall[2] === left, 'recvInto wrote into our buffer');
const intoBig = new Float64Array(300_000);
const rb = world.recvInto(intoBig, left, 61);
await world.send(right, big, 61);
const mb = await rb;
check(mb.data.buffer === intoBig.buffer && mb.data.length === 300_000 && intoBig[299_999] === 299_999 * 0.5 + left, 'recvInto assembles a large message in our buffer');
await world.send(right, Int16Array.of(5, 6), 62); // arrives before the receive is posted
await world.barrier();
const late = await world.recvInto(new Int16Array(4), left, 62);
equal(Array.from(late.data), [5, 6], 'recvInto of a message that arrived earlier');
// A message that fills the buffer: its data is the buffer itself, posted before the message or after
const full = new Int32Array(2);
const rf = world.recvInto(full, left, 66);
await world.send(right, Int32Array.of(7, rank), 66);
check((await rf).data === full && full[1] === left, 'recvInto: a message that fills the buffer is the buffer itself');
await world.send(right, Int32Array.of(8, rank), 67);
await world.barrier();
const fullLate = new Int32Array(2);
check((await world.recvInto(fullLate, left, 67)).data === fullLate && fullLate[0] === 8, 'recvInto: a message that arrived earlier and fills the buffer is the buffer itself');
await world.send(right, new Int16Array(9), 63);
await rejects(() => world.recvInto(new Int16Array(4), left, 63), MprunError, 'recvInto of a longer message');
await world.send(right, 'not an array', 64);
await rejects(() => world.recvInto(new Int16Array(4), left, 64), MprunError, 'recvInto of another type');
await rejects(() => world.recvInto([] as unknown as Int16Array, left, 65), TypeError, 'recvInto into a non-typed-array (rejects: misuse of a promise-returning call)');

// Exchange patterns: receive posted first, then send, both ways at once
const ex = world.recv(left, 70);
await world.send(right, big, 70);
equal((await ex).data, big.map((x) => x - rank + left), 'irecv-then-send exchange of a large message');
const [, got2] = await Promise.all([world.send(right, rank, 71), world.recv<number>(left, 71)]);
equal(got2.data, left, 'Promise.all exchange');

// ANY_SOURCE / ANY_TAG: rank 0 receives one message from every other rank
await world.barrier();
if (rank !== 0) await world.send(0, rank, 40 + rank);
if (rank === 0) {
  const seen = new Set<number>();
  for (let k = 1; k < size; k++) {
    const m = await world.recv<number>(ANY_SOURCE, ANY_TAG);
    equal(m.tag, 40 + m.source, 'ANY_TAG reports the tag');
    equal(m.data, m.source, 'ANY_SOURCE reports the source');
    seen.add(m.source);
  }
  equal(seen.size, size - 1, 'one message from every rank');
}
// probe
await world.send(rank, 'to myself', 50);
const pr = world.probe(rank, 50);
equal(pr, { source: rank, tag: 50 }, 'probe sees a message without taking it');
equal((await world.recv(rank, 50)).data, 'to myself', 'send to self');
equal(world.probe(rank, 50), null, 'probe after recv');
const selfArr = new Float64Array([1, 2]);
await world.send(rank, selfArr, 51);
selfArr[0] = 99;
equal(Array.from((await world.recv<Float64Array>(rank, 51)).data), [1, 2], 'send to self copies');
const early = world.recv(rank, 52); // posted before its send: matched when the send comes
await world.send(rank, 'later', 52);
equal((await early).data, 'later', 'a receive from oneself posted before the send');
await rejects(() => world.send(size, 1), RangeError, 'send to a bad rank');
await rejects(() => world.send(right, 1, -2), RangeError, 'negative tag');
await rejects(() => world.recv(size), RangeError, 'recv from a bad rank');

// --- synchronous forms: no promise, the thread blocks (README, "Synchronous forms") ---
await world.barrier(); // rank 0's ANY_TAG receives above are done: no sync message can match them
const syncInto = new Float64Array(2);
for (let k = 0; k < 200; k++) {
  world.sendSync(right, Float64Array.of(k, rank), 80);
  const m = world.recvIntoSync(syncInto, left, 80);
  check(m.data === syncInto && syncInto[0] === k && syncInto[1] === left && m.source === left && m.tag === 80, `sendSync / recvIntoSync around the ring, round ${k}`);
}
world.sendSync(right, { text: 'sync', rank }, 81);
equal(world.recvSync(left, 81).data, { text: 'sync', rank: left }, 'recvSync of a msgpack value');
world.sendSync(right, big, 82); // larger than a ring: every rank blocks in sendSync while its neighbour does too
const bigSync = world.recvIntoSync(new Float64Array(300_000), left, 82);
check(bigSync.data.length === 300_000 && bigSync.data[299_999] === 299_999 * 0.5 + left, 'a large message between synchronous calls');
world.sendSync(right, Int16Array.of(1, 2, 3), 83);
throws(() => world.recvIntoSync(new Int16Array(2), left, 83), MprunError, 'recvIntoSync of a longer message');
throws(() => world.recvIntoSync([] as unknown as Int16Array, left, 84), TypeError, 'recvIntoSync into a non-typed-array');
throws(() => world.sendSync(size, 1), RangeError, 'sendSync to a bad rank');
world.barrierSync();
world.team('shared').barrierSync();
equal(world.allreduceSync(rank + 1, 'sum'), (size * (size + 1)) / 2, 'allreduceSync of a number');
equal(world.allreduceSync(BigInt(rank), 'max'), BigInt(size - 1), 'allreduceSync of a bigint');
const arSync = Float64Array.of(rank, -rank);
check(world.allreduceSync(arSync, 'max') === arSync && arSync[0] === size - 1 && arSync[1] === 0, 'allreduceSync of a typed array, in place');
let loopSum = 0;
for (let k = 0; k < 300; k++) loopSum += world.allreduceSync(Float64Array.of(k), 'sum')[0]!;
equal(loopSum, (size * 300 * 299) / 2, 'allreduceSync in a tight loop');
equal(world.reduceSync(rank, 'sum', size - 1), rank === size - 1 ? (size * (size - 1)) / 2 : null, 'reduceSync to the last rank');
equal(world.bcastSync(rank === 0 ? { from: 'root' } : null, 0), { from: 'root' }, 'bcastSync of a value');
const bcSync = new Int32Array(4).fill(rank === size - 1 ? 9 : 0);
check(world.bcastSync(bcSync, size - 1) === bcSync && bcSync.every((x) => x === 9), 'bcastSync of a typed array, in place');
throws(() => world.allreduceSync(1.5, 'band'), TypeError, 'allreduceSync: a bitwise reduction of a fraction');
throws(() => world.reduceSync(1, 'sum', size), RangeError, 'reduceSync to a bad root');
// Puts to another node complete asynchronously: barrierSync refuses until they are quiet.
if (!sameNode(right)) {
  world.put(f, src, right);
  throws(() => world.barrierSync(), MprunError, 'barrierSync after a put to another node');
  const quiet = world.quiet();
  throws(() => world.barrierSync(), MprunError, 'barrierSync while a quiet is on its way');
  await quiet;
}
world.barrierSync();
// A barrier after puts to another node quiets them first, at its own turn: a collective called
// after it, before it is awaited, still runs after it on every rank (it ran first on the ranks
// with puts to flush: a collective mismatch across ranks).
if (!sameNode(right)) world.put(f, src, right);
const barrierFirst = world.barrier();
const afterBarrier = world.allreduce(rank, 'sum');
await barrierFirst;
equal(await afterBarrier, (size * (size - 1)) / 2, 'an allreduce called after a barrier with puts to flush, before it is awaited');
// A promise-returning collective in flight: synchronous calls refuse (a peer awaiting it would wait for ever).
if (size > 1) {
  if (rank === 0) {
    const p = world.allreduce(1, 'sum'); // the others join only after rank 0's message: in flight here
    throws(() => world.barrierSync(), MprunError, 'barrierSync while an allreduce is in flight');
    throws(() => world.team('shared').allreduceSync(1, 'sum'), MprunError, 'allreduceSync on another team meanwhile');
    throws(() => world.recvSync(1, 86), MprunError, 'recvSync meanwhile');
    throws(() => world.sendSync(1, 0, 86), MprunError, 'sendSync meanwhile');
    for (let r = 1; r < size; r++) await world.send(r, 0, 86);
    equal(await p, size, 'the allreduce that was in flight');
  } else {
    await world.recv(0, 86);
    equal(await world.allreduce(1, 'sum'), size, 'the allreduce that was in flight');
  }
}
world.barrierSync();

// --- barrier, many times, with skew -----------------------------------------------
for (let k = 0; k < 50; k++) {
  if (k % 10 === rank % 10) await new Promise((r) => setTimeout(r, 1));
  await world.barrier();
}

console.log(`api ok ${rank}`);
await world.finalize();
check(world.finalized, 'finalized');
throws(() => world.put(f, src, right), MprunError, 'use after finalize');
await rejects(() => world.barrier(), MprunError, 'barrier after finalize');
await rejects(() => world.allreduce(1, 'sum'), MprunError, 'collective after finalize');
throws(() => world.split(0), MprunError, 'split after finalize');
throws(() => world.barrierSync(), MprunError, 'barrierSync after finalize');
throws(() => world.sendSync(right, 1), MprunError, 'sendSync after finalize');
