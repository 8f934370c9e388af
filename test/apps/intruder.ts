/**
 * Rank 0 connects to the job's control socket like an attacker would: once
 * with a wrong secret, once with garbage bytes. Both connections must be
 * closed by mprun, and the job must go on.
 */
import { connect } from 'node:net';
import { init } from 'mprun';
import { encodeFrame } from '../../core/wire.js';

const world = await init();

function attempt(bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(process.env.MPRUN_CONTROLLER!);
    s.on('connect', () => s.write(bytes));
    s.on('data', () => resolve('answered'));
    s.on('close', () => resolve('closed'));
    s.on('error', () => resolve('closed'));
  });
}

if (world.rank === 0) {
  console.log(`intruder ${await attempt(encodeFrame({ t: 'auth', v: 1, secret: 'not-the-secret', rank: 1 }))}: wrong secret`);
  console.log(`intruder ${await attempt(Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 2, 3]))}: garbage`);
}
await world.barrier();
await world.finalize();
