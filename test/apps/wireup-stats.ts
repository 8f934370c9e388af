/**
 * What the wire-up cost each rank (issue 12.4), read from the counters on
 * globalThis (Symbol.for('mprun.wireup.stats')) at three points: right after
 * init; after a ring exchange with the rank `STRIDE` above and below
 * (STRIDE = ranks per node: the same local rank on the next and previous
 * node), a put, a get and a fetch-add to the one above; after a barrier and
 * 8-byte and 1 MiB allreduces over the world. Prints per rank
 * "wireup <rank> <phase> <json>", then "wireup ok <rank>".
 */
import { init } from 'mprun';
import { check, equal } from './check.js';
import type { WireupStats } from '../../transports/peers.js';

const world = await init();
const { rank, size } = world;
const stats = (): WireupStats => {
  const s = (globalThis as unknown as Record<symbol, WireupStats | undefined>)[Symbol.for('mprun.wireup.stats')];
  check(s !== undefined, 'the wire-up counters are on globalThis');
  return { ...s! };
};
const show = (phase: string): void => void process.stdout.write(`wireup ${rank} ${phase} ${JSON.stringify(stats())}\n`);
show('init');

const stride = Number(process.env.STRIDE ?? world.local.size);
const up = (rank + stride) % size;
const down = (rank - stride + size) % size;
const cell = world.alloc(Int32Array, 4);
const sent = world.send(up, { from: rank });
const got = await world.recv<{ from: number }>(down, 0);
await sent;
equal(got.data.from, down, 'the ring message');
world.put(cell, Int32Array.of(rank), up, 0);
await world.quiet();
const back = await world.get(new Int32Array(1), cell, up, 1);
equal(back[0], 0, 'a get from the neighbour');
await world.atomics.fetchAdd(cell, 2, 1, up);
await world.barrier();
equal(cell[0], down, 'the put from below');
equal(cell[2], 1, 'the fetch-add from below');
show('ring');

await world.barrier();
const x = await world.allreduce(Float64Array.of(rank), 'sum');
equal(x[0], (size * (size - 1)) / 2, '8-byte allreduce');
const big = await world.allreduce(new Float64Array(131_072).fill(1), 'sum');
equal(big[7], size, '1 MiB allreduce');
show('collectives');
await world.finalize();
console.log(`wireup ok ${rank}`);
