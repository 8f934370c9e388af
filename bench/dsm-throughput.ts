/**
 * Shared-variable fetchAdd throughput: every rank not on the first node does
 * OPS fetchAdds on one counter whose page is homed on the first node (node
 * index 0); prints the total operations per second. Run by bench/cross-node.ts.
 */
import { init } from 'mprun';

const world = await init();
const ops = Number(process.env.OPS ?? 20000);
const counter = await world.dsm.share('counter', Int32Array, 1);
const home = world.team('shared').worldRanks.includes(0);
// Warm up the path (JIT, connection), then time between barriers.
if (!home) for (let i = 0; i < 2000; i++) await counter.fetchAdd(0, 1);
await world.barrier();
const t0 = performance.now();
if (!home) for (let i = 0; i < ops; i++) await counter.fetchAdd(0, 1);
await world.barrier();
const seconds = (performance.now() - t0) / 1000;
const n = await world.allreduce(home ? 0 : 1, 'sum');
if (world.rank === 0) {
  const total = await counter.load(0);
  if (total !== n * (ops + 2000)) throw new Error(`counter is ${total}, expected ${n * (ops + 2000)}`);
  console.log(`fetchAdd ops/s: ${((n * ops) / seconds).toFixed(0)} (${n} ranks, ${ops} each, ${seconds.toFixed(3)} s)`);
}
await world.finalize();
