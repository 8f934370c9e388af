/**
 * One-sided benchmarks between ranks 0 and 1 (osu_put_latency, osu_get_latency,
 * osu_put_bw, osu_get_bw). Bandwidth rows carry, as a baseline measured in the
 * same run by the same rank, a plain memcpy (TypedArray.set) of the same size
 * and the ratio of the two.
 */
import type { World } from 'mprun';
import { LARGE_MESSAGE_SIZE, loops, sizes, type OsuOptions } from './options.js';
import { Report } from './report.js';
import { JIT_NOTE, JIT_WARMUP } from './pt2pt.js';

/**
 * The target window (symmetric, max size) and rank 0's local buffer, filled
 * with i & 0xff (the window too, for gets), and the path warmed up.
 */
async function prepare(world: World, o: OsuOptions, op: 'put' | 'get'): Promise<{ win: Uint8Array; local: Uint8Array }> {
  const win = world.alloc(Uint8Array, Math.max(1, o.maxSize));
  const local = new Uint8Array(Math.max(1, o.maxSize));
  for (let i = 0; i < local.length; i++) local[i] = i & 0xff;
  if (op === 'get') win.set(local.subarray(0, win.length));
  if (world.rank === 0) await rmaWarmup(world, win, op, 1);
  await world.barrier();
  return { win, local };
}

async function rmaWarmup(world: World, win: Uint8Array, op: 'put' | 'get', peer: number): Promise<void> {
  const buf = new Uint8Array(1);
  for (let i = 0; i < JIT_WARMUP; i++) {
    if (op === 'put') world.put(win, buf, peer);
    else await world.get(buf, win, peer);
    if ((i & 63) === 63) await world.quiet();
  }
}

function validateRange(buf: Uint8Array, size: number, seed: number): void {
  for (let i = 0; i < size; i++) {
    if (buf[i] !== ((seed + i) & 0xff)) throw new Error(`validation failed at byte ${i}: ${buf[i]} != ${(seed + i) & 0xff}`);
  }
}

export async function rmaLatency(world: World, o: OsuOptions, op: 'put' | 'get'): Promise<void> {
  const report = new Report(o, `mprun OSU-style ${op === 'put' ? 'Put' : 'Get'} Latency Test`, 'Latency (us)');
  if (world.rank === 0) report.header([`Synchronization: ${op === 'put' ? 'quiet after each put' : 'get completes on return'}`, JIT_NOTE]);
  const { win, local } = await prepare(world, o, op);
  for (const size of sizes(o)) {
    if (size === 0) continue;
    const { iterations, skip } = loops(o, size);
    if (world.rank === 0) {
      const src = local.subarray(0, size);
      const run = async (n: number): Promise<number> => {
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          if (op === 'put') {
            world.put(win, src, 1);
            await world.quiet();
          } else {
            await world.get(src, win, 1);
          }
        }
        return performance.now() - t0;
      };
      // This very loop untimed first (skip, and JIT_WARMUP at small sizes), so that V8 has
      // optimized it: the figure is the steady one, as the header says.
      await run(Math.max(skip, size > LARGE_MESSAGE_SIZE ? 0 : Math.min(JIT_WARMUP, 10 * iterations)));
      report.row({ size, value: ((await run(iterations)) * 1000) / iterations, iterations });
      if (o.validate && op === 'get') validateRange(src, size, 0);
    }
    await world.barrier();
    if (o.validate && op === 'put' && world.rank === 1) validateRange(win, size, 0);
  }
}

function memcpyMBps(size: number, window: number, iterations: number, skip: number): number {
  const src = new Uint8Array(size).fill(7);
  const dst = new Uint8Array(size);
  let t0 = 0;
  for (let i = 0; i < iterations + skip; i++) {
    if (i === skip) t0 = performance.now();
    for (let w = 0; w < window; w++) dst.set(src);
  }
  const seconds = (performance.now() - t0) / 1000;
  return (size * window * iterations) / seconds / 1e6;
}

export async function rmaBandwidth(world: World, o: OsuOptions, op: 'put' | 'get'): Promise<void> {
  const report = new Report(o, `mprun OSU-style ${op === 'put' ? 'Put' : 'Get'} Bandwidth Test`, 'Bandwidth (MB/s)');
  if (world.rank === 0) report.header([`Window size: ${o.window}, in flight together (${op === 'put' ? 'putNbi' : 'gets awaited together'}); synchronization: quiet after each window`, 'memcpy: TypedArray.set of the same size in this process, measured in this run', JIT_NOTE]);
  if (world.rank === 0) memcpyMBps(1, o.window, JIT_WARMUP / o.window, 0);
  const { win, local } = await prepare(world, o, op);
  for (const size of sizes(o)) {
    if (size === 0) continue;
    const { iterations, skip } = loops(o, size);
    if (world.rank === 0) {
      const buf = local.subarray(0, size);
      let t0 = 0;
      for (let i = 0; i < iterations + skip; i++) {
        if (i === skip) t0 = performance.now();
        // The window's operations in flight together, as osu_put_bw's MPI_Put and osu_get_bw's
        // MPI_Get are until their flush: putNbi (src unchanged until the quiet), gets awaited together.
        if (op === 'put') for (let w = 0; w < o.window; w++) world.putNbi(win, buf, 1);
        else {
          const gets: Promise<Uint8Array>[] = [];
          for (let w = 0; w < o.window; w++) gets.push(world.get(buf, win, 1));
          await Promise.all(gets);
        }
        await world.quiet();
      }
      const seconds = (performance.now() - t0) / 1000;
      const mbps = (size * o.window * iterations) / seconds / 1e6;
      const base = memcpyMBps(size, o.window, iterations, skip);
      report.row({ size, value: mbps, iterations, extra: { 'memcpy (MB/s)': base, [`${op}/memcpy`]: mbps / base } });
      if (o.validate && op === 'get') validateRange(buf, size, 0);
    }
    await world.barrier();
    if (o.validate && op === 'put' && world.rank === 1) validateRange(win, size, 0);
  }
}

/** Remote atomics latency on rank 1's memory, per operation (osu_oshm_atomics style). */
export async function atomicLatency(world: World, o: OsuOptions): Promise<void> {
  const report = new Report(o, 'mprun OSU-style Atomic Latency Test', 'Latency (us)');
  if (world.rank === 0) report.header(['Rows: 1 = fetchAdd (Int32Array), 2 = compareSwap (Int32Array), 3 = fetchAdd (BigInt64Array), 4 = compareSwap (BigInt64Array)', JIT_NOTE]);
  const i32 = world.alloc(Int32Array, 1);
  const i64 = world.alloc(BigInt64Array, 1);
  await world.barrier();
  const kinds: Array<() => Promise<unknown>> = [
    () => world.atomics.fetchAdd(i32, 0, 1, 1),
    () => world.atomics.compareSwap(i32, 0, 0, 0, 1),
    () => world.atomics.fetchAdd(i64, 0, 1n, 1),
    () => world.atomics.compareSwap(i64, 0, 0n, 0n, 1),
  ];
  if (world.rank === 0) {
    for (const [k, op] of kinds.entries()) {
      for (let i = 0; i < JIT_WARMUP; i++) await op();
      const t0 = performance.now();
      for (let i = 0; i < o.iterations; i++) await op();
      report.row({ size: k + 1, value: ((performance.now() - t0) * 1000) / o.iterations, iterations: o.iterations });
    }
  }
  await world.barrier();
  if (o.validate && world.rank === 1 && i32[0] !== JIT_WARMUP + o.iterations) throw new Error(`validation failed: ${i32[0]} fetchAdds arrived`);
}
