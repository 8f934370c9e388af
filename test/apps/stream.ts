/** Ranks stream puts and gets to a rank on another node until the job is stopped. */
import { init } from 'mprun';

const world = await init();
const peer = (world.rank + world.size / 2) % world.size;
const a = world.alloc(Float64Array, 1 << 16);
const src = new Float64Array(1 << 16).fill(world.rank);
console.log(`rank ${world.rank} streaming to ${peer}`);
for (;;) {
  world.put(a, src, peer);
  await world.get(new Float64Array(1 << 16), a, peer);
}
