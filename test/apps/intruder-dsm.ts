/**
 * Rank 0 knocks on its node agent's data port (the one other nodes' ranks
 * use): a wrong secret, garbage, a frame of an unknown version, and, with the
 * right secret, a put outside the target's heap. Each must be closed (and
 * logged by the agent) without a byte moving; then the job goes on and the
 * data path still works between every pair of ranks.
 */
import { connect } from 'node:net';
import { init } from 'mprun';
import { frame, DsmFrame } from '../../transports/dsm/frames.js';
import { parseTcpAddress } from '../../core/wire.js';
import { check, equal } from './check.js';

const world = await init();
const { rank, size } = world;
const heap = world.alloc(Float64Array, 16);

function attempt(...frames: Buffer[]): Promise<string> {
  const address = process.env.MPRUN_AGENT_ADDR!;
  const tcp = parseTcpAddress(address);
  return new Promise((resolve) => {
    const s = tcp === null ? connect(address) : connect(tcp);
    let answered = false;
    s.on('connect', () => {
      for (const f of frames) s.write(f);
    });
    s.on('data', () => (answered = true));
    s.on('close', () => resolve(answered ? 'authenticated, then closed' : 'closed'));
    s.on('error', () => undefined);
  });
}

if (rank === 0) {
  const secret = Buffer.from(process.env.MPRUN_SECRET!);
  console.log(`intruder ${await attempt(frame(DsmFrame.AUTH, { target: 0 }, Buffer.from('guess')))}: wrong secret`);
  console.log(`intruder ${await attempt(Buffer.from('GET / HTTP/1.0\r\n\r\n'.repeat(4)))}: garbage`);
  const old = frame(DsmFrame.AUTH, { target: 0 }, secret);
  old[4] = 99;
  console.log(`intruder ${await attempt(old)}: version 99`);
  console.log(`intruder ${await attempt(frame(DsmFrame.PUT, { target: 0, offset: 0 }, new Uint8Array(8)))}: put before auth`);
  const huge = frame(DsmFrame.PUT, { target: 0, offset: 2 ** 40 }, new Uint8Array(8).fill(0xff));
  console.log(`intruder ${await attempt(frame(DsmFrame.AUTH, { target: 0 }, secret), huge)}: put outside the heap`);
  const alien = frame(DsmFrame.PUT, { target: size + 5, offset: heap.byteOffset }, new Uint8Array(8).fill(0xff));
  console.log(`intruder ${await attempt(frame(DsmFrame.AUTH, { target: 0 }, secret), alien)}: put to no such rank`);
}
await world.barrier();
check(heap.every((x) => x === 0), 'no intruder moved a byte');
await world.barrier();
// The data path still works: everyone puts into its right neighbour.
world.put(heap, Float64Array.of(rank + 0.5), (rank + 1) % size, 1);
await world.barrier();
equal(heap[1], ((rank - 1 + size) % size) + 0.5, 'puts after the intruders');
console.log(`rank ${rank} done`);
await world.finalize();
