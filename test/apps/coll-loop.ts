/**
 * Every rank loops collectives across nodes until the job is stopped: a
 * barrier, an 8-byte and a 1 MiB allreduce, a broadcast. Prints one line once
 * its first lap is done (wire-up over, every collective run across the link),
 * so a test can take a node away in the middle of the laps that follow. Each
 * result is checked: a lap that completed computed right.
 */
import { init } from 'mprun';

const world = await init();
const { rank, size } = world;
const small = new Float64Array(1);
const big = new Float64Array((1 << 20) / 8);
const root = new Int32Array(4);
const want = (size * (size + 1)) / 2;
for (let lap = 0; ; lap++) {
  await world.barrier();
  small[0] = rank + 1;
  if ((await world.allreduce(small, 'sum'))[0] !== want) throw new Error(`rank ${rank}: 8-byte allreduce wrong at lap ${lap}`);
  big.fill(rank + 1);
  const sum = await world.allreduce(big, 'sum');
  if (sum[0] !== want || sum[big.length - 1] !== want) throw new Error(`rank ${rank}: 1 MiB allreduce wrong at lap ${lap}`);
  root.fill(rank === lap % size ? lap : -1);
  if ((await world.bcast(root, lap % size))[3] !== lap) throw new Error(`rank ${rank}: bcast wrong at lap ${lap}`);
  if (lap === 0) console.log(`rank ${rank} looping collectives`);
}
