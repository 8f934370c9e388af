// mprun -n 8 examples/hello.ts
// Every rank says hello, passes a token around the ring, and adds into rank 0's
// counter with a remote atomic.
import { init } from 'mprun';

const world = await init();
const { rank, size } = world;
console.log(`hello from rank ${rank} of ${size} (local ${world.local.rank} of ${world.local.size}, pid ${process.pid})`);

// A token around the ring with send/recv.
if (size > 1) {
  if (rank === 0) {
    await world.send(1, { hops: 1, path: [0] });
    const { data } = await world.recv<{ hops: number; path: number[] }>(size - 1);
    console.log(`token came back after ${data.hops} hops: ${data.path.join(' -> ')} -> 0`);
  } else {
    const { data } = await world.recv<{ hops: number; path: number[] }>(rank - 1);
    data.path.push(rank);
    await world.send((rank + 1) % size, { hops: data.hops + 1, path: data.path });
  }
}

// Everyone adds its rank + 1 into rank 0's counter.
const counter = world.alloc(Int32Array, 1);
await world.atomics.fetchAdd(counter, 0, rank + 1, 0);
await world.barrier();
if (rank === 0) console.log(`sum of (rank + 1) over ${size} ranks: ${counter[0]} (expected ${(size * (size + 1)) / 2})`);

await world.finalize();
