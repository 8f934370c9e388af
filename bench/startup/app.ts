// The startup benchmark's program (bench/startup.ts): init, allreduce one number, print, finalize.
import { init } from 'mprun';

const world = await init();
const sum = await world.allreduce(world.rank + 1, 'sum');
if (world.rank === 0) console.log(`sum ${sum}`);
await world.finalize();
