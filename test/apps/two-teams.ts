/**
 * A collective of one team awaited while another team's collective is still
 * in its steps: rank 1 cannot reach the first until rank 0 runs the second's
 * steps, which only rank 0's continuations do. Rank 0 must not sleep in the
 * first's wait meanwhile, neither natively in its resume (Team.#resumed) nor in
 * Waiter.block() (a whole slice: 5 s here, the test sets MPRUN_BLOCK_SLICE_MS).
 * Prints each round's milliseconds on rank 0.
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
if (world.rank === 0) console.log(`two-teams ms ${JSON.stringify(ms.map((t) => Math.round(t)))}`);
await world.finalize();
