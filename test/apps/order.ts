/**
 * Collectives start in call order, even one called from the continuation of
 * another still in flight. Rank 0 arrives late, so its allreduce completes at
 * once while the others' wait; every rank then calls, in this order, a barrier
 * and (from the allreduce's continuation, registered first) a broadcast. A rank
 * that let the broadcast overtake the queued barrier would meet the others'
 * barrier with it: a collective mismatch.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { init } from 'mprun';

const world = await init();
for (let round = 0; round < 20; round++) {
  if (world.rank === 0) await sleep(20);
  const a = world.allreduce(Float64Array.of(1), 'sum');
  let c: Promise<unknown> | null = null;
  const cont = a.then(() => {
    c = world.bcast(Int32Array.of(world.rank === 0 ? round : -1), 0);
  });
  const b = world.barrier();
  await Promise.all([a, cont, b]);
  const got = (await c!) as Int32Array;
  if (got[0] !== round || (await a)[0] !== world.size) throw new Error(`round ${round}: bcast gave ${got[0]}`);
}
console.log(`order ok ${world.rank}`);
await world.finalize();
