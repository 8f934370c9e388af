/**
 * settle(): an operation that completed inside its call, whose promise settles
 * only some promise hops later (the agents' native thread answers a get before
 * the call returns), is seen without a wait; the rank must not sleep a slice on
 * a doorbell nobody rings. The slice here is 5 s, so a wait that slept would
 * miss the 1 s by which these must have settled.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ControlSegment } from '../transports/shm/control.js';
import { Waiter } from './wait.js';

const { segment } = ControlSegment.create(1, 4096, 2);
afterAll(() => segment.unmap());

function hops(n: number): Promise<number> {
  let p = Promise.resolve(0);
  for (let i = 0; i < n; i++) p = p.then((v) => v + 1);
  return p;
}

describe('Waiter.wait after the world is finalized', () => {
  it('a wait nobody awaits any more ends with ERR_MPRUN_FINALIZED once the control segment is unmapped, not a TypeError on its words', async () => {
    const own = ControlSegment.create(1, 4096, 2).segment;
    const waiter = new Waiter(own, 0, 20, false, 5);
    const orphan = waiter.wait(() => false, 0, () => 'a send the runtime does not wait for');
    await new Promise((resolve) => setTimeout(resolve, 30));
    own.unmap();
    await expect(orphan).rejects.toMatchObject({ code: 'ERR_MPRUN_FINALIZED' });
  });
});

describe('Waiter.settle', () => {
  it('returns an operation settled a few promise hops after its call without sleeping a slice', async () => {
    const waiter = new Waiter(segment, 0, 50, false, 5000);
    for (const n of [0, 1, 2, 3, 6]) {
      const t0 = performance.now();
      const v = await Promise.race([waiter.settle(hops(n), () => `hops ${n}`), new Promise<string>((resolve) => setTimeout(() => resolve('slept'), 1000))]);
      expect(v, `${n} hops`).toBe(n);
      expect(performance.now() - t0).toBeLessThan(1000);
    }
  });
});

describe('Waiter.syncDozeNs', () => {
  it('lets a synchronous call sleep natively for a slice only while the node memory alone brings the rank events and nothing is pending', async () => {
    const plain = new Waiter(segment, 0, 50, false, 7);
    expect(plain.syncDozeNs()).toBe(7e6);
    let pending = true;
    plain.attach(() => false, () => pending);
    expect(plain.syncDozeNs()).toBe(0); // a send or receive in flight: block() must drive it
    pending = false;
    expect(plain.syncDozeNs()).toBe(7e6);
    // A resumed collective of a team with two in flight (it and one queued behind it): its own
    // count allows the sleep; a collective of another team in its steps as well does not.
    plain.asyncSteps = 2;
    expect(plain.syncDozeNs(2)).toBe(7e6);
    expect(plain.syncDozeNs()).toBe(0);
    plain.asyncSteps = 3;
    expect(plain.syncDozeNs(2)).toBe(0);
    plain.asyncSteps = 0;
    // An asynchronous wait pending (from its call on, before its first turn): not either.
    let met = false;
    const waiting = plain.wait(() => met, 0, () => 'a wait for memory');
    expect(plain.syncDozeNs()).toBe(0);
    met = true;
    await waiting;
    expect(plain.syncDozeNs()).toBe(7e6);
    // A resumed collective of a team with two in flight (it and one queued behind it): its own
    // count allows the sleep; a collective of another team in its steps as well does not.
    plain.asyncSteps = 2;
    expect(plain.syncDozeNs(2)).toBe(7e6);
    expect(plain.syncDozeNs()).toBe(0);
    plain.asyncSteps = 3;
    expect(plain.syncDozeNs(2)).toBe(0);
    plain.asyncSteps = 0;
    // Connections to other nodes, a hook to run before a blocking wait or before a sleep: never.
    const hooks: Array<(w: Waiter) => void> = [(w) => w.network(() => false, () => undefined), (w) => w.beforeBlocking(() => undefined), (w) => w.beforeSleep(() => true)];
    for (const hook of hooks) {
      const w = new Waiter(segment, 0, 50, false, 7);
      hook(w);
      expect(w.syncDozeNs()).toBe(0);
    }
  });
});
