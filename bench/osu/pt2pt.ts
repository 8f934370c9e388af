/** Point-to-point benchmarks between ranks 0 and 1 (osu_latency). */
import type { World } from 'mprun';
import { loops, sizes, type OsuOptions } from './options.js';
import { Report } from './report.js';

export const JIT_WARMUP = 20000;
export const JIT_NOTE = `${JIT_WARMUP} untimed iterations of the timed loop first, so that V8 has compiled it`;

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
  let t0 = 0;
  // Received into a buffer of our own, as osu_latency's MPI_Recv does.
  const into = new Uint8Array(buf.length);
  if (world.rank === 0) {
    for (let i = 0; i < iterations + skip; i++) {
      if (i === skip) t0 = performance.now();
      await world.send(1, buf, 1);
      const { data } = await world.recvInto(into, 1, 1);
      if (validate && i === skip) check(data, 2, 'pong');
    }
    return ((performance.now() - t0) * 1000) / (2 * iterations);
  }
  if (world.rank === 1) {
    for (let i = 0; i < iterations + skip; i++) {
      const { data } = await world.recvInto(into, 0, 1);
      if (validate && i === skip) check(data, 1, 'ping');
      await world.send(0, buf, 1);
    }
  }
  return 0;
}

/** osu_latency: ping-pong of `size` bytes; half the round trip. */
export async function latency(world: World, o: OsuOptions): Promise<void> {
  const report = new Report(o, 'mprun OSU-style Latency Test (send/recv)', 'Latency (us)');
  if (world.rank === 0) report.header([JIT_NOTE]);
  const warm = new Uint8Array(8);
  fill(warm, world.rank + 1);
  // The same sequence as a timed size (barrier, then the loop), in many short
  // calls: one long loop is optimized by on-stack replacement, which does not
  // serve the later calls that are timed.
  for (let k = 0; k < JIT_WARMUP / 200; k++) {
    await world.barrier();
    await pingPong(world, warm, 200, 0, false);
  }
  for (const size of sizes(o)) {
    const { iterations, skip } = loops(o, size);
    const buf = new Uint8Array(size);
    fill(buf, world.rank + 1);
    await world.barrier();
    const us = await pingPong(world, buf, iterations, skip, o.validate);
    if (world.rank === 0) report.row({ size, value: us, iterations });
  }
}
