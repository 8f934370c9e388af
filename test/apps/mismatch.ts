/**
 * Ranks that disagree about a collective, chosen by argv[2]:
 *   length  allreduce with different lengths on the last rank
 *   kind    the last rank calls bcast where the others call allreduce
 *   type    the last rank allreduces an Int32Array, the others a Float64Array
 *   bcast   the last rank's buffer is shorter than the root's
 *   alloc   the last rank allocates a longer first array, then all allocate the same
 * Every case must end the job with a clear message, not hang.
 */
import { init } from 'mprun';

const world = await init();
const last = world.rank === world.size - 1;
switch (process.argv[2]) {
  case 'length':
    await world.allreduce(new Float64Array(last ? 16 : 8), 'sum');
    break;
  case 'kind':
    if (last) await world.bcast(new Float64Array(8), 0);
    else await world.allreduce(new Float64Array(8), 'sum');
    break;
  case 'type':
    if (last) await world.allreduce(new Int32Array(8), 'sum');
    else await world.allreduce(new Float64Array(8), 'sum');
    break;
  case 'bcast':
    await world.bcast(new Float64Array(last ? 4 : 8), 0);
    break;
  case 'alloc': {
    world.alloc(Float64Array, last ? 20 : 10);
    const b = world.alloc(Float64Array, 4);
    if (world.rank === 0) world.put(b, Float64Array.of(1, 2, 3, 4), world.size - 1);
    await world.barrier();
    break;
  }
  default:
    throw new Error(`unknown case ${process.argv[2]}`);
}
await world.finalize();
