/**
 * The last rank knocks on mprun's control port like an attacker on another
 * node would: a wrong secret, then garbage. Both must be closed; the job goes on.
 * (No init: it runs on any placement.)
 */
import { connect } from 'node:net';
import { encodeFrame } from '../../core/wire.js';

const [host, port] = (() => {
  const m = /^(.*):(\d+)$/.exec(process.env.MPRUN_CONTROLLER ?? '')!;
  return [m[1]!, Number(m[2])];
})();

function attempt(bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.on('connect', () => s.write(bytes));
    s.on('data', () => resolve('answered'));
    s.on('close', () => resolve('closed'));
    s.on('error', () => resolve('closed'));
  });
}

if (process.env.MPRUN_RANK === String(Number(process.env.MPRUN_SIZE) - 1)) {
  console.log(`intruder ${await attempt(encodeFrame({ t: 'auth', v: 1, secret: 'guess', role: 'agent', node: 0 }))}: wrong secret`);
  console.log(`intruder ${await attempt(Buffer.from('GET / HTTP/1.0\r\n\r\n'))}: garbage`);
}
console.log(`rank ${process.env.MPRUN_RANK} done`);
