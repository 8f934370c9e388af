// Many ranks on one node (issue 13): after init and a barrier, how many peers'
// heaps and collective arenas has each rank mapped? Then every rank sends to
// rank 0 (one queue, many producers) and to its neighbour, and reports.
import { readFileSync } from 'node:fs';
import { init } from 'mprun';

const world = await init();
const { rank, size } = world;
await world.barrier();
const maps = readFileSync('/proc/self/maps', 'utf8').split('\n');
const heaps = maps.filter((l) => l.includes('memfd:mprun-heap')).length;
const arenas = maps.filter((l) => l.includes('memfd:mprun-coll')).length;
const control = maps.filter((l) => l.includes('memfd:mprun-control')).map((l) => {
  const [a, b] = l.split(' ')[0]!.split('-');
  return parseInt(b!, 16) - parseInt(a!, 16);
});
// Many producers into one queue: everyone sends a few messages to rank 0, some large (fragments).
const big = new Float64Array(40_000).fill(rank);
if (rank === 0) {
  const got = new Map<number, number[]>();
  for (let k = 0; k < (size - 1) * 3; k++) {
    const m = await world.recv();
    const v = m.data instanceof Float64Array ? m.data[0]! + 0.5 : (m.data as number);
    got.set(m.source, [...(got.get(m.source) ?? []), v]);
  }
  for (const [s, vs] of got) if (vs.join() !== [s * 10, s + 0.5, s * 10 + 1].join()) throw new Error(`rank ${s}'s messages arrived as ${vs.join()}`);
} else {
  await world.send(0, rank * 10, 1);
  await world.send(0, big, 2);
  await world.send(0, rank * 10 + 1, 3);
}
await world.barrier();
const right = (rank + 1) % size;
const left = (rank + size - 1) % size;
const [, m] = await Promise.all([world.send(right, rank), world.recv(left)]);
if (m.data !== left) throw new Error(`rank ${rank} got ${String(m.data)} from its left neighbour`);
const most = await world.allreduce(Int32Array.of(heaps, arenas, control[0] ?? 0), 'max');
if (rank === 0) console.log(`scale ok: ${size} ranks; at most ${most[0]} heap and ${most[1]} arena mappings per rank after init; control segment ${most[2]} bytes`);
await world.finalize();
