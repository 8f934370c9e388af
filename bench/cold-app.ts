/**
 * What a user's program feels: a plain ESM app whose top-level `await` loops
 * start right after init(), with nothing run before them.
 *
 *   mprun -n N bench/cold-app.ts KIND [CHUNKS [PER [WARMUP]]]
 *
 * KIND: latency (8-byte send/recv ping-pong between ranks 0 and 1),
 * barrier, or allreduce (one float64, sum, a new Float64Array per call),
 * each awaited; or latency-sync, barrier-sync, allreduce-sync: the same
 * loops with the synchronous forms (sendSync/recvIntoSync, barrierSync,
 * allreduceSync), nothing awaited.
 * Times CHUNKS (16) chunks of PER (500) operations right after init (cold),
 * then runs WARMUP (20000) more untimed and times CHUNKS chunks again
 * (steady), all in the one top-level loop a user would write. Rank 0 prints
 * one JSON line: {"system","kind","ranks","per","cold":[...],"steady":[...]},
 * microseconds per operation for each chunk (latency: one way, half a round
 * trip). bench/peers/cold_peer.c and cold_peer.py are the same program on
 * Open MPI and mpi4py; bench/cold.ts runs the three alternately.
 */
import { init } from 'mprun';

const kind = process.argv[2] ?? '';
const chunks = Number(process.argv[3] ?? 16);
const per = Number(process.argv[4] ?? 500);
const warmup = Number(process.argv[5] ?? 20000);

const world = await init();

const base = kind.replace(/-sync$/, '');
if (!['latency', 'barrier', 'allreduce'].includes(base) || !(chunks >= 1 && per >= 1 && warmup >= 0)) {
  if (world.rank === 0) world.abort(2, 'usage: cold-app.ts latency|barrier|allreduce[-sync] [CHUNKS [PER [WARMUP]]]');
  await world.barrier();
}
if (base === 'latency' && world.size < 2) world.abort(2, 'latency needs 2 ranks');

const warmChunks = Math.ceil(warmup / per);
const total = chunks + warmChunks + chunks;
const ms: number[] = [];
let sum = 0;

if (kind === 'barrier') {
  for (let c = 0; c < total; c++) {
    const t0 = performance.now();
    for (let i = 0; i < per; i++) await world.barrier();
    ms.push(performance.now() - t0);
  }
} else if (kind === 'allreduce') {
  for (let c = 0; c < total; c++) {
    const t0 = performance.now();
    for (let i = 0; i < per; i++) {
      const r = await world.allreduce(Float64Array.of(i), 'sum');
      sum += r[0]!;
    }
    ms.push(performance.now() - t0);
  }
} else if (kind === 'barrier-sync') {
  for (let c = 0; c < total; c++) {
    const t0 = performance.now();
    for (let i = 0; i < per; i++) world.barrierSync();
    ms.push(performance.now() - t0);
  }
} else if (kind === 'allreduce-sync') {
  for (let c = 0; c < total; c++) {
    const t0 = performance.now();
    for (let i = 0; i < per; i++) sum += world.allreduceSync(Float64Array.of(i), 'sum')[0]!;
    ms.push(performance.now() - t0);
  }
} else if (kind === 'latency-sync' && world.rank < 2) {
  const buf = new Uint8Array(8).fill(world.rank + 1);
  const into = new Uint8Array(8);
  for (let c = 0; c < total; c++) {
    const t0 = performance.now();
    for (let i = 0; i < per; i++) {
      if (world.rank === 0) {
        world.sendSync(1, buf, 1);
        world.recvIntoSync(into, 1, 1);
      } else {
        world.recvIntoSync(into, 0, 1);
        world.sendSync(0, buf, 1);
      }
    }
    ms.push(performance.now() - t0);
  }
} else if (kind === 'latency' && world.rank < 2) {
  const buf = new Uint8Array(8).fill(world.rank + 1);
  const into = new Uint8Array(8);
  for (let c = 0; c < total; c++) {
    const t0 = performance.now();
    for (let i = 0; i < per; i++) {
      if (world.rank === 0) {
        await world.send(1, buf, 1);
        await world.recvInto(into, 1, 1);
      } else {
        await world.recvInto(into, 0, 1);
        await world.send(0, buf, 1);
      }
    }
    ms.push(performance.now() - t0);
  }
}

if (base === 'allreduce' && sum !== (world.size * total * per * (per - 1)) / 2) throw new Error(`allreduce summed to ${sum}`);
if (world.rank === 0) {
  const us = ms.map((t) => (t * 1000) / (base === 'latency' ? 2 * per : per));
  console.log(JSON.stringify({ system: 'mprun', kind, ranks: world.size, per, cold: us.slice(0, chunks), steady: us.slice(chunks + warmChunks) }));
}
await world.finalize();
