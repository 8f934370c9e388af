/**
 * Programs that hang, for the hang-report tests (argv[2]); each prints "waiting" on rank 0 first:
 *   recv    both ranks receive first (tag 5) and never send
 *   mixed   rank 0 calls barrier() while the others call allreduce()
 *   ckpt    only rank 0 checkpoints (run with --job)
 *   recv-sync, mixed-sync   as recv and mixed, blocked in the synchronous forms
 */
import { init } from 'mprun';

const world = await init();
const other = (world.rank + 1) % world.size;
if (world.rank === 0) console.log('waiting');
switch (process.argv[2]) {
  case 'recv':
    await world.recv(other, 5);
    break;
  case 'mixed':
    if (world.rank === 0) await world.barrier();
    else await world.allreduce(1, 'sum');
    break;
  case 'ckpt': {
    world.protect('x', new Float64Array(4));
    await world.restore();
    if (world.rank === 0) await world.checkpoint();
    else await new Promise((r) => setTimeout(r, 60_000));
    break;
  }
  case 'recv-sync':
    world.recvSync(other, 5);
    break;
  case 'mixed-sync':
    if (world.rank === 0) world.barrierSync();
    else world.allreduceSync(1, 'sum');
    break;
  default:
    throw new Error(`unknown case ${process.argv[2]}`);
}
await world.finalize();
