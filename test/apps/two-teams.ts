/**
 * A collective of one team awaited while another team's collective is still
 * in its steps: rank 1 cannot reach the first until rank 0 runs the second's
 * steps, which only rank 0's continuations do. Rank 0 must not sleep in the
 * first's wait meanwhile, neither natively in its resume (Team.#resumed) nor in
 * Waiter.block() (a whole slice: 5 s here, the test sets MPRUN_BLOCK_SLICE_MS).
 * Then the same with a memory wait (waitUntil) pending instead of the other
 * team's steps. Prints each round's milliseconds on rank 0.
 */
import { init } from 'mprun';

const world = await init();
const other = world.split(0)!;
const big = new Float64Array(1 << 17); // 1 MiB: more than one flat round, so its steps run in continuations
const ms: number[] = [];
for (let round = 0; round < 10; round++) {
  await world.barrier();
  const t0 = performance.now();
  big.fill(world.rank + round);
  if (world.rank === 0) {
    // Its steps begin in the call and wait for rank 1's contribution; the barrier then resumes first.
    const inSteps = other.allreduce(big, 'sum');
    await world.barrier();
    await inSteps;
  } else {
    await other.allreduce(big, 'sum');
    await world.barrier();
  }
  ms.push(performance.now() - t0);
  if (big[7] !== 2 * round + 1) throw new Error(`round ${round}: allreduce gave ${big[7]}`);
}
// A memory wait pending while a collective is awaited: rank 1 joins the allreduce only after
// what rank 0 does once its waitUntil holds, in that wait's continuation.
const flags = world.alloc(Int32Array, 2); // [0]: rank 1 sets it on rank 0; [1]: rank 0 on rank 1
const small = new Float64Array(1);
for (let round = 1; round <= 5; round++) {
  await world.barrier();
  const t0 = performance.now();
  small[0] = round;
  if (world.rank === 0) {
    const answered = world.waitUntil(flags, 0, '==', round).then(() => world.atomics.set(flags, 1, round, 1));
    await world.allreduce(small, 'sum');
    await answered;
  } else {
    await world.atomics.set(flags, 0, round, 0);
    await world.waitUntil(flags, 1, '==', round);
    await world.allreduce(small, 'sum');
  }
  ms.push(performance.now() - t0);
  if (small[0] !== 2 * round) throw new Error(`memory round ${round}: allreduce gave ${small[0]}`);
}
if (world.rank === 0) console.log(`two-teams ms ${JSON.stringify(ms.map((t) => Math.round(t)))}`);
await world.finalize();
