/** Point-to-point benchmarks between ranks 0 and 1 (osu_latency). */
import type { World } from 'mprun';
import { loops, sizes, type OsuOptions } from './options.js';
import { Report } from './report.js';

function fill(buf: Uint8Array, seed: number): void {
  for (let i = 0; i < buf.length; i++) buf[i] = (seed + i) & 0xff;
}

function check(buf: Uint8Array, seed: number, what: string): void {
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== ((seed + i) & 0xff)) throw new Error(`validation failed: ${what} byte ${i} is ${buf[i]}, expected ${(seed + i) & 0xff}`);
  }
}

export const JIT_WARMUP = 20000;
export const JIT_NOTE = `${JIT_WARMUP} untimed iterations first, so that V8 has compiled the path being timed`;

async function pingPong(world: World, buf: Uint8Array, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    if (world.rank === 0) {
      await world.send(1, buf, 1);
      await world.recv(1, 1);
    } else if (world.rank === 1) {
      await world.recv(0, 1);
      await world.send(0, buf, 1);
    }
  }
}

/** osu_latency: ping-pong of `size` bytes; half the round trip. */
export async function latency(world: World, o: OsuOptions): Promise<void> {
  const report = new Report(o, 'mprun OSU-style Latency Test (send/recv)', 'Latency (us)');
  if (world.rank === 0) report.header([JIT_NOTE]);
  // Untimed: lets V8 compile the send/recv path before the first size is timed.
  await pingPong(world, new Uint8Array(8), JIT_WARMUP);
  for (const size of sizes(o)) {
    const { iterations, skip } = loops(o, size);
    const buf = new Uint8Array(size);
    fill(buf, world.rank + 1);
    await world.barrier();
    let t0 = 0;
    if (world.rank === 0) {
      for (let i = 0; i < iterations + skip; i++) {
        if (i === skip) t0 = performance.now();
        await world.send(1, buf, 1);
        const { data } = await world.recv<Uint8Array>(1, 1);
        if (o.validate && i === skip) check(data, 2, 'pong');
      }
      const us = ((performance.now() - t0) * 1000) / (2 * iterations);
      report.row({ size, value: us, iterations });
    } else if (world.rank === 1) {
      for (let i = 0; i < iterations + skip; i++) {
        const { data } = await world.recv<Uint8Array>(0, 1);
        if (o.validate && i === skip) check(data, 1, 'ping');
        await world.send(0, buf, 1);
      }
    }
  }
}
