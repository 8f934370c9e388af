/**
 * Collective benchmarks (osu_barrier, osu_bcast, osu_reduce, osu_allreduce,
 * osu_allgather, osu_gather, osu_scatter, osu_alltoall): each iteration is
 * timed alone and followed by a barrier, as OSU does; the figure is the
 * average over ranks of each rank's mean, with min and max over ranks (-f).
 * Reductions are float64 sums (sizes in bytes, 8 bytes per element).
 */
import type { World } from 'mprun';
import { JIT_WARMUP } from './pt2pt.js';
import { LARGE_MESSAGE_SIZE, loops, sizes, type OsuOptions } from './options.js';
import { Report } from './report.js';

type Op = (size: number) => { run: () => Promise<unknown>; validate?: () => void | Promise<void> };

function pattern(n: number, seed: number): Uint8Array {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (seed + i) & 0xff;
  return a;
}

function ops(world: World, name: string): Op {
  const n = world.size;
  const me = world.rank;
  switch (name) {
    case 'barrier':
      return () => ({ run: () => world.barrier() });
    case 'bcast':
      return (size) => {
        const buf = me === 0 ? pattern(size, 1) : new Uint8Array(size);
        return { run: () => world.bcast(buf, 0), validate: () => check(buf, pattern(size, 1), 'bcast') };
      };
    case 'reduce':
    case 'allreduce': {
      return (size) => {
        // Not refilled between timed calls (OSU does not either); validation refills first.
        const buf = new Float64Array(Math.max(1, size / 8)).fill(me + 1);
        const run = name === 'reduce' ? () => world.reduce(buf, 'sum', 0) : () => world.allreduce(buf, 'sum');
        return {
          run,
          validate: async () => {
            buf.fill(me + 1);
            await run();
            if (name === 'allreduce' || me === 0) {
              if (buf[buf.length - 1] !== (n * (n + 1)) / 2) throw new Error(`validation failed: ${name} gave ${buf[buf.length - 1]}`);
            }
          },
        };
      };
    }
    case 'allgather':
    case 'gather':
      return (size) => {
        const mine = pattern(size, me);
        let out: Uint8Array | null = null;
        return {
          run: async () => (out = name === 'gather' ? await world.gather(mine, 0) : await world.allgather(mine)),
          validate: () => {
            if (out !== null) for (let r = 0; r < n; r++) check(out.subarray(r * size, (r + 1) * size), pattern(size, r), name);
          },
        };
      };
    case 'scatter':
      return (size) => {
        const all = me === 0 ? pattern(size * n, 0) : null;
        let got: Uint8Array | null = null;
        return { run: async () => (got = await world.scatter(all, 0)), validate: () => check(got!, pattern(size * n, 0).subarray(me * size, (me + 1) * size), 'scatter') };
      };
    case 'alltoall':
      return (size) => {
        const mine = pattern(size * n, me);
        let got: Uint8Array | null = null;
        return {
          run: async () => (got = await world.alltoall(mine)),
          validate: () => {
            for (let r = 0; r < n; r++) check(got!.subarray(r * size, (r + 1) * size), pattern(size * n, r).subarray(me * size, (me + 1) * size), 'alltoall');
          },
        };
      };
    default:
      throw new Error(`no collective benchmark ${name}`);
  }
}

function check(got: Uint8Array, want: Uint8Array, what: string): void {
  if (got.length !== want.length) throw new Error(`validation failed: ${what} length ${got.length}, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) throw new Error(`validation failed: ${what} byte ${i}`);
}

/** One batch: `n` runs, each timed alone and followed by a barrier; returns the summed milliseconds. */
async function batch(world: World, run: () => Promise<unknown>, n: number): Promise<number> {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await run();
    total += performance.now() - t0;
    await world.barrier();
  }
  return total;
}

/**
 * Times `iterations` runs after `skip` untimed ones; returns this rank's mean
 * in microseconds. In short batches: V8 cannot switch a running async
 * function to optimized code, so one long loop would be timed interpreted.
 */
async function timed(world: World, run: () => Promise<unknown>, iterations: number, skip: number): Promise<number> {
  for (let done = 0; done < skip; done += BATCH) await batch(world, run, Math.min(BATCH, skip - done));
  let total = 0;
  for (let done = 0; done < iterations; done += BATCH) total += await batch(world, run, Math.min(BATCH, iterations - done));
  return (total * 1000) / iterations;
}

const BATCH = 50;

export async function collective(world: World, o: OsuOptions): Promise<void> {
  const title = `mprun OSU-style ${o.name[0]!.toUpperCase()}${o.name.slice(1)} Latency Test`;
  const report = new Report(o, title, 'Avg Latency(us)');
  const make = ops(world, o.name);
  if (world.rank === 0) report.header([`${world.size} ranks${o.name.includes('reduce') ? '; float64 sum' : ''}`, `untimed calls of the same code first (${JIT_WARMUP} at small sizes, ${JIT_WARMUP / 20} at large), so that V8 has optimized it`]);
  const list = o.name === 'barrier' ? [0] : sizes(o).filter((s) => s > 0 && (!o.name.includes('reduce') || s >= 8));
  for (const size of list) {
    const { iterations, skip } = o.name === 'barrier' ? { iterations: o.iterations, skip: o.skip } : loops(o, size);
    const op = make(size);
    await world.barrier();
    // Untimed pass of this very closure first: a new closure deoptimizes the
    // timed loop, and V8 needs thousands of calls to optimize it again.
    await timed(world, op.run, Math.min(size > LARGE_MESSAGE_SIZE ? JIT_WARMUP / 20 : JIT_WARMUP, 20 * iterations), 0);
    const mean = await timed(world, op.run, iterations, skip);
    if (o.validate) await op.validate?.();
    const stats = await world.allgather(Float64Array.of(mean));
    if (world.rank === 0) {
      const avg = stats.reduce((a, b) => a + b, 0) / stats.length;
      report.row({ size, value: avg, min: Math.min(...stats), max: Math.max(...stats), iterations });
    }
  }
}
