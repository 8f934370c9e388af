/**
 * A checkpointing script that simply ends: no finalize(). argv[2] 'async' or
 * 'sync'. Each run adds 1 to a protected counter and checkpoints it; a rerun
 * of the job prints the counter it resumed from.
 */
import { init } from 'mprun';

const world = await init();
const counter = new Float64Array(1);
world.protect('counter', counter);
const epoch = await world.restore();
if (world.rank === 0) console.log(epoch === null ? 'fresh start' : `resumed epoch ${epoch} counter ${counter[0]}`);
counter[0]! += 1;
await world.checkpoint({ async: process.argv[2] === 'async' });
if (world.rank === 0) console.log(`checkpointed counter ${counter[0]}`);
