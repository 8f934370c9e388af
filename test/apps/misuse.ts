/**
 * Misuse of promise-returning calls: each must report it as a rejected
 * promise (so that .catch() sees it), never as a synchronous throw. Prints
 * "misuse ok R" when every case does; argv[2] 'throw' then throws an
 * uncaught error on the last rank (its report must name the rank).
 */
import { init } from 'mprun';

const world = await init();
const peer = (world.rank + 1) % world.size;
const a = world.alloc(Float64Array, 8);
const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
  ['send to a string rank', () => world.send('1' as unknown as number, 1), /destination 1 is not a rank/],
  ['send to a rank past the end', () => world.send(world.size, 1), /is not a rank of this world/],
  ['send of a symbol', () => world.send(peer, Symbol('s')), /send to rank \d+ \(tag 0\): the data cannot be encoded: .*symbol/],
  ['send with a bad tag', () => world.send(peer, 1, -1), /tag must be an integer/],
  ['recv from a bad rank', () => world.recv(-5), /is not a rank/],
  ['recvInto a non-array', () => world.recvInto({} as unknown as Float64Array), /recvInto needs a typed array/],
  ['bcast from a bad root', () => world.bcast(1, 99), /root 99 is not a rank/],
  ['reduce to a bad root', () => world.reduce(1, 'sum', -1), /root -1 is not a rank/],
  ['gather to a bad root', () => world.gather(1, 1.5), /root 1.5 is not a rank/],
  ['scatter from a bad root', () => world.scatter([1], 99), /root 99 is not a rank/],
  ['alltoall of too few values', () => world.alltoall([]), /alltoall/],
  ['allreduce with a bad operator', () => world.allreduce(1, 'avg' as never), /avg/],
  ['get outside the allocation', () => world.get(new Float64Array(4), a, peer, 6), /outside the allocation/],
  ['waitUntil with a bad index', () => world.waitUntil(a, 99, '==', 1), /outside the allocation/],
  ['fetchAdd on a Float64Array', () => world.atomics.fetchAdd(a as never, 0, 1 as never, peer), /Int32Array/],
  ['checkpoint outside a --job', () => world.checkpoint(), /--job/],
];
for (const [what, call, message] of cases) {
  let p: Promise<unknown>;
  try {
    p = call();
  } catch (e) {
    throw new Error(`${what}: threw synchronously: ${(e as Error).message}`);
  }
  const outcome = await p.then(() => null, (e: unknown) => e);
  if (!(outcome instanceof Error)) throw new Error(`${what}: did not reject`);
  if (!message.test(outcome.message)) throw new Error(`${what}: rejected with "${outcome.message}", expected ${message}`);
}
await world.barrier();
console.log(`misuse ok ${world.rank}`);
if (process.argv[2] === 'throw' && world.rank === world.size - 1) throw new Error('a failure of the program');
await world.finalize();
