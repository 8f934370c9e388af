/**
 * The native fast paths' sleep (native/words.h WaitUntil, a synchronous form's
 * wait for a late peer) across processes: the two members of a team are two
 * processes mapping one control segment and two arenas (memfds), as ranks do.
 * Member 0 sleeps in the barrier, an allreduce or a broadcast with a doze of
 * 10 s, in the fast call itself (a synchronous form) or in resume() after a
 * fast call that did not sleep (a promise form's continuation); member 1
 * arrives 300 ms later through the native path or through the TypeScript
 * steps, whose rings (WAKE_ACK, WAKE_SYNC) must wake it at once. The job's
 * abort must end the sleep as well.
 */
import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native, packageRoot } from '../../native/index.js';
import { ControlSegment } from '../../transports/shm/control.js';

const SCRATCH = 2 * 64 * 1024;
const DOZE_NS = 10e9;

/** One member: its collective (or 'abort'), through 'native', 'resume' (a try, then resume()) or 'steps'; prints { done, ms, value, resumed }. */
const MEMBER = `
  const [me, op, path] = JSON.parse(process.argv[1]);
  const dist = ${JSON.stringify(join(packageRoot, 'dist'))};
  const { ControlSegment } = await import(dist + '/transports/shm/control.js');
  const { ShmCollectives } = await import(dist + '/runtime/coll/shm.js');
  const { KIND } = await import(dist + '/runtime/coll/engine.js');
  const { native } = await import(dist + '/native/index.js');
  const ctrl = ControlSegment.open(3);
  const arenas = [4, 5].map((fd) => native().mapFd(fd, 0, ${SCRATCH}));
  const e = new ShmCollectives({
    ctrl, me, size: 2, worldRanks: [10, 11], localRanks: [0, 1],
    ackIndex: [0, 1].map((r) => ctrl.teamAckIndex(r, 0)), dataIndex: [0, 1].map((r) => ctrl.teamDataIndex(r, 0)),
    scratch: (j) => arenas[j], scratchOffset: 0, scratchBytes: ${SCRATCH}, chunkBytes: 32768,
  });
  // The TypeScript steps, driven by polling what each waits for.
  const drive = (g) => { for (let r = g.next(); !r.done; r = g.next()) while (!r.value()); return true; };
  const doze = me === 0 ? ${DOZE_NS} : 0;
  // A fast call: sleeping in it, or polling once and then resuming with the sleep (resumed:
  // the poll left the round undone, so the sleep was resume()'s).
  let resumed = false;
  const fast = (tryIt) => {
    if (path !== 'resume') return tryIt(doze);
    if (tryIt(0)) return true;
    resumed = e.resumable;
    return e.resume(0, doze);
  };
  if (me === 1) await new Promise((r) => setTimeout(r, 300));
  const t0 = performance.now();
  let done = false, value = null;
  if (op === 'abort') { ctrl.abort('member 1 failed'); done = true; }
  else if (op === 'barrier') done = path !== 'steps' ? fast((d) => e.tryBarrier(0, d)) : drive(e.barrier());
  else if (op === 'allreduce') {
    const buf = Float64Array.of(me + 1);
    done = path !== 'steps' ? fast((d) => e.tryReduce(buf, 'sum', KIND.allreduce, 0, 0, Float64Array, d)) : drive(e.reduce(buf, 'sum', KIND.allreduce, 0, buf, null));
    value = buf[0];
  } else if (op === 'bcast') {
    const buf = me === 1 ? Float64Array.of(4.5, 5.5) : new Float64Array(2);
    done = path !== 'steps' ? fast((d) => e.tryBcast(buf, 1, 0, d)) : drive(e.bcast(buf, 1));
    value = [...buf];
  }
  console.log(JSON.stringify({ done, ms: performance.now() - t0, value, resumed }));
  ctrl.unmap();
`;

interface Result {
  done: boolean;
  ms: number;
  value: unknown;
  /** Through resume(): the first call polled once, left its round, and resume() slept in it. */
  resumed: boolean;
}

function member(fds: number[], me: number, op: string, path: string): Promise<Result> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', MEMBER, JSON.stringify([me, op, path])], { stdio: ['ignore', 'pipe', 'pipe', ...fds] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Result) : reject(new Error(`member ${me} exited ${code}: ${err}`)))));
}

const opened: number[] = [];
afterAll(() => opened.forEach((fd) => closeSync(fd)));

/** A fresh node: the control segment's fd and both arenas' (fds 3, 4 and 5 of each member). */
function node(): number[] {
  const { segment, fd } = ControlSegment.create(2, 4096, 2);
  segment.unmap();
  const fds = [fd, native().memfdCreate('mprun-test-arena', SCRATCH), native().memfdCreate('mprun-test-arena', SCRATCH)];
  opened.push(...fds);
  return fds;
}

describe('a collective asleep in native code, woken by a member in another process', () => {
  const expected: Record<string, unknown> = { barrier: null, allreduce: 3, bcast: [4.5, 5.5] };
  for (const op of ['barrier', 'allreduce', 'bcast']) {
    for (const [asleep, path] of [['native', 'native'], ['native', 'steps'], ['resume', 'steps']]) {
      it(`${op}: asleep ${asleep === 'native' ? 'in the fast call' : 'in resume()'}, member 1 arrives through the ${path === 'native' ? 'native path' : 'TypeScript steps'}`, async () => {
        const fds = node();
        const [sleeper, late] = await Promise.all([member(fds, 0, op, asleep!), member(fds, 1, op, path!)]);
        expect(late.done).toBe(true);
        expect(sleeper.done).toBe(true);
        expect(sleeper.resumed).toBe(asleep === 'resume');
        // Woken, not timed out: 300 ms late (plus the late member's start), far from the 10 s doze.
        expect(sleeper.ms).toBeLessThan(5000);
        expect([sleeper.value, late.value]).toEqual([expected[op], expected[op]]);
      });
    }
  }

  it("the job's abort ends the sleep at once, undone", async () => {
    const fds = node();
    const [sleeper] = await Promise.all([member(fds, 0, 'barrier', 'native'), member(fds, 1, 'abort', 'native')]);
    expect(sleeper.done).toBe(false);
    expect(sleeper.ms).toBeLessThan(5000);
  });
});
