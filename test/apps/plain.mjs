// A plain JavaScript app: no compile step.
import { init } from 'mprun';

const world = await init();
console.log(`plain ${world.rank} of ${world.size}`);
await world.finalize();
