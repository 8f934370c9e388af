/**
 * MPRUN_WARMUP=N: init() runs N barriers, N 8-byte allreduces and N rounds of
 * an 8-byte ring exchange before it returns, so that the program's first calls
 * run code V8 has compiled already. Off by default: it is what a tuned
 * benchmark does before timing, and it costs start-up time (measured at 2
 * ranks, N = 2000: 0.36 -> 0.47 s wall; at 8 ranks on 2 cores, seconds), which
 * issue 10 also counts. README, "Cold and steady", has the figures either way.
 */
import type { World } from './world.js';
import { INTERNAL_TAG } from './p2p.js';

/** The largest user tag: nothing of the program can be in flight before init() returns. */
const TAG = INTERNAL_TAG - 1;

export async function warmUp(world: World, rounds: number): Promise<void> {
  if (rounds <= 0 || world.size < 2) return;
  const x = new Float64Array(1);
  for (let i = 0; i < rounds; i++) await world.barrier();
  for (let i = 0; i < rounds; i++) await world.allreduce(x, 'sum');
  const right = (world.rank + 1) % world.size;
  const left = (world.rank + world.size - 1) % world.size;
  const out = new Uint8Array(8);
  const into = new Uint8Array(8);
  for (let i = 0; i < rounds; i++) {
    const got = world.recvInto(into, left, TAG);
    await world.send(right, out, TAG);
    await got;
  }
  // Every rank has taken every warm-up message before any returns.
  await world.barrier();
}
