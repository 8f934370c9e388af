/**
 * A rank asleep in a wait must not hold up what its peer does through it
 * (test/cluster/ucx.test.ts, issue 12). Over UCX's TCP transport a put
 * completes at a flush only once the target's worker acknowledges it, and
 * messages and puts arrive through the target's worker: the native progress
 * thread serves them while the rank sleeps on its doorbell, and must wake it
 * when what it took in is for the rank. Rank 1 waits (in recv, then on its
 * memory) for long stretches while rank 0 drives ROUNDS of each pattern; with
 * a 20 ms sleep per round (the rank's slice, as before the fix) this takes
 * minutes, with wake-ups well under a second. With MPRUN_UCX_PROGRESS_THREAD=0
 * the rank arms its worker before it sleeps and a native wake thread watches
 * the worker's event fd instead: the same must hold.
 *
 * Usage: mprun -n 2 (one rank per node) test/apps/ucx-wake.ts
 */
import { init } from 'mprun';

const world = await init();
const ROUNDS = Number(process.env.ROUNDS ?? 1500);
if (world.size !== 2) throw new Error(`ucx-wake runs on 2 ranks, not ${world.size}`);
const flag = world.alloc(Int32Array, 2);
const data = world.alloc(Uint8Array, 64);
const src = new Uint8Array(8);
await world.barrier();

// 1. put + quiet while the target sleeps in a receive: each quiet waits for the target's acknowledgement.
if (world.rank === 0) {
  for (let i = 0; i < ROUNDS; i++) {
    src.fill(i & 0xff);
    world.put(data, src, 1);
    await world.quiet();
  }
  await world.send(1, 'puts done', 7);
} else {
  const m = await world.recv<string>(0, 7);
  if (m.data !== 'puts done') throw new Error(`unexpected message ${String(m.data)}`);
  for (let j = 0; j < 8; j++) if (data[j] !== ((ROUNDS - 1) & 0xff)) throw new Error(`byte ${j} is ${data[j]} after the puts, not ${(ROUNDS - 1) & 0xff}`);
}

// 2. Ping-pong of messages: each side waits for the other's message.
const buf = new Int32Array(1);
for (let i = 0; i < ROUNDS; i++) {
  if (world.rank === 0) {
    buf[0] = i;
    await world.send(1, buf, 1);
    await world.recvInto(buf, 1, 2);
  } else {
    await world.recvInto(buf, 0, 1);
    if (buf[0] !== i) throw new Error(`ping ${i} carried ${buf[0]}`);
    await world.send(0, buf, 2);
  }
}

// 3. Ping-pong through memory: a put of a flag, which the other side waits for on its heap.
const one = new Int32Array(1);
for (let i = 1; i <= ROUNDS; i++) {
  if (world.rank === 0) {
    one[0] = i;
    world.put(flag, one, 1, 0);
    await world.quiet();
    await world.waitUntil(flag, 1, '==', i);
  } else {
    await world.waitUntil(flag, 0, '==', i);
    one[0] = i;
    world.put(flag, one, 0, 1);
    await world.quiet();
  }
}
console.log(`ucx-wake ok ${world.rank}`);
await world.finalize();
