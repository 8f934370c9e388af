/** Point-to-point benchmarks between ranks 0 and 1 (osu_latency). */
import type { World } from 'mprun';
import { loops, sizes, type OsuOptions } from './options.js';
import { Report } from './report.js';

export const JIT_WARMUP = 20000;
export const JIT_NOTE = `${JIT_WARMUP} untimed iterations first, and timing in batches of 50 calls, so that V8 runs optimized code`;

function fill(buf: Uint8Array, seed: number): void {
  for (let i = 0; i < buf.length; i++) buf[i] = (seed + i) & 0xff;
}

function check(buf: Uint8Array, seed: number, what: string): void {
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== ((seed + i) & 0xff)) throw new Error(`validation failed: ${what} byte ${i} is ${buf[i]}, expected ${(seed + i) & 0xff}`);
  }
}

/**
 * `iterations` round trips after `skip` untimed ones; returns microseconds
 * one way on rank 0. The JIT warm-up runs this same function, so that the
 * loop being timed is the one V8 has optimized.
 */
async function pingPong(world: World, buf: Uint8Array, iterations: number, skip: number, validate: boolean): Promise<number> {
  // Received into a buffer of our own, as osu_latency's MPI_Recv does.
  const into = new Uint8Array(buf.length);
  for (let done = 0; done < skip; done += BATCH) await pingPongBatch(world, buf, into, Math.min(BATCH, skip - done));
  const t0 = performance.now();
  for (let done = 0; done < iterations; done += BATCH) await pingPongBatch(world, buf, into, Math.min(BATCH, iterations - done));
  const us = ((performance.now() - t0) * 1000) / (2 * iterations);
  if (validate && buf.length > 0) check(into, world.rank === 0 ? 2 : 1, world.rank === 0 ? 'pong' : 'ping');
  return world.rank === 0 ? us : 0;
}

/**
 * `n` round trips. Timing runs in batches like this one: V8 cannot switch a
 * running async function to optimized code, so one long loop would be timed
 * interpreted; a function called many times is optimized normally.
 */
async function pingPongBatch(world: World, buf: Uint8Array, into: Uint8Array, n: number): Promise<void> {
  if (world.rank === 0) {
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
}

export const BATCH = 50;

/** osu_latency: ping-pong of `size` bytes; half the round trip. */
export async function latency(world: World, o: OsuOptions): Promise<void> {
  if (world.rank > 1) return;
  const report = new Report(o, 'mprun OSU-style Latency Test (send/recv)', 'Latency (us)');
  if (world.rank === 0) report.header([JIT_NOTE]);
  const warm = new Uint8Array(8);
  fill(warm, world.rank + 1);
  await pingPong(world, warm, JIT_WARMUP, 0, false);
  for (const size of sizes(o)) {
    const { iterations, skip } = loops(o, size);
    const buf = new Uint8Array(size);
    fill(buf, world.rank + 1);
    await world.barrier();
    const us = await pingPong(world, buf, iterations, skip, o.validate);
    if (world.rank === 0) report.row({ size, value: us, iterations });
  }
}

/**
 * osu_bw (one direction) and osu_bibw (both): windows of `window` sends in
 * flight, received into one buffer, then a 4-byte acknowledgement.
 */
export async function bandwidth(world: World, o: OsuOptions, both: boolean): Promise<void> {
  const report = new Report(o, `mprun OSU-style ${both ? 'Bi-Directional ' : ''}Bandwidth Test (send/recv)`, 'Bandwidth (MB/s)');
  if (world.rank === 0) report.header([`Window size: ${o.window}`, JIT_NOTE]);
  const ack = new Uint8Array(4);
  const ackInto = new Uint8Array(4);
  const peer = 1 - world.rank;
  const windowOnce = async (buf: Uint8Array, into: Uint8Array): Promise<void> => {
    const sends: Promise<void>[] = [];
    if (world.rank === 0 || both) for (let w = 0; w < o.window; w++) sends.push(world.send(peer, buf, 2));
    if (world.rank === 1 || both) for (let w = 0; w < o.window; w++) await world.recvInto(into, peer, 2);
    await Promise.all(sends);
    if (world.rank === 1) await world.send(0, ack, 3);
    else await world.recvInto(ackInto, 1, 3);
  };
  const run = async (buf: Uint8Array, into: Uint8Array, iterations: number, skip: number): Promise<number> => {
    for (let i = 0; i < skip; i++) await windowOnce(buf, into);
    const t0 = performance.now();
    for (let i = 0; i < iterations; i++) await windowOnce(buf, into);
    const seconds = (performance.now() - t0) / 1000;
    return ((both ? 2 : 1) * buf.length * o.window * iterations) / seconds / 1e6;
  };
  if (world.rank > 1) return;
  for (let k = 0; k < 50; k++) await run(new Uint8Array(8), new Uint8Array(8), 10, 0);
  for (const size of sizes(o)) {
    if (size === 0) continue;
    const { iterations, skip } = loops(o, size);
    const buf = new Uint8Array(size);
    fill(buf, world.rank + 1);
    const into = new Uint8Array(size);
    const mbps = await run(buf, into, iterations, skip);
    if (o.validate && (world.rank === 1 || both)) check(into, 2 - world.rank, 'bw payload');
    if (world.rank === 0) report.row({ size, value: mbps, iterations });
  }
}
