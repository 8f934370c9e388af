/**
 * settle(): an operation that completed inside its call, whose promise settles
 * only some promise hops later (the agents' native thread answers a get before
 * the call returns), is seen without a wait; the rank must not sleep a slice on
 * a doorbell nobody rings. The slice here is 5 s, so a wait that slept would
 * miss the 1 s by which these must have settled.
 */
import { nextTick } from 'node:process';
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

describe('Waiter.wait with other continuations pending', () => {
  // The slice is 5 s and nobody rings the doorbell: a wait that slept would miss the 1 s.
  const within = async (p: Promise<unknown>): Promise<string> => {
    const t0 = performance.now();
    await p;
    return performance.now() - t0 < 1000 ? 'done' : 'slept';
  };

  it("returns to the event loop when another pending wait's condition holds, even one registered after it", async () => {
    const waiter = new Waiter(segment, 0, 50, false, 5000);
    let first = false;
    const a = waiter.wait(() => first, 0, () => 'a wait only the other one ends');
    const b = waiter.wait(() => true, 0, () => 'a wait already met').then(() => (first = true));
    expect(await within(Promise.all([a, b]))).toBe('done');
  });

  it("polls another wait's condition without losing what that poll takes (a collective's message across nodes)", async () => {
    const waiter = new Waiter(segment, 0, 50, false, 5000);
    const inbox = [7];
    let got: number | undefined;
    let taken = false;
    const other = waiter.wait(() => taken, 0, () => 'a wait only the taking one ends');
    const takes = waiter.wait(() => (got = inbox.shift()) !== undefined, 0, () => 'a wait that takes a message').then(() => (taken = true));
    expect(await within(Promise.all([other, takes]))).toBe('done');
    expect(got).toBe(7);
  });

  it('lets the continuations queued behind its first turn run before it sleeps (the code after a wait that has just ended)', async () => {
    const waiter = new Waiter(segment, 0, 50, false, 5000);
    let met = false;
    const a = waiter.wait(() => met, 0, () => 'a wait a continuation two hops later ends');
    void Promise.resolve()
      .then(() => undefined)
      .then(() => (met = true));
    expect(await within(a)).toBe('done');
  });

  it("gives way to the continuation of a wait that has just ended, queued behind this one's turn", async () => {
    const waiter = new Waiter(segment, 0, 50, false, 5000);
    let first = false;
    let second = false;
    // Both take their first turn; the first's condition holds before its second, and its
    // continuation (which ends the other) is queued behind the other's second turn.
    const a = waiter.wait(() => first, 0, () => 'a wait that ends first').then(() => (second = true));
    const b = waiter.wait(() => second, 0, () => "a wait the first one's continuation ends");
    nextTick(() => (first = true));
    expect(await within(Promise.all([a, b]))).toBe('done');
  });

  it('returns to the event loop while a collective is between its fast call and its steps (Waiter.runnable)', async () => {
    const waiter = new Waiter(segment, 0, 50, false, 5000);
    let met = false;
    waiter.runnable = 1;
    const a = waiter.wait(() => met, 0, () => 'a wait the resumed continuation ends');
    setImmediate(() => {
      met = true;
      waiter.runnable = 0;
    });
    expect(await within(a)).toBe('done');
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
    // A resumed collective (Team.#resumed) of a team with two in flight (it and one queued behind
    // it): its own count allows the sleep; a collective of another team in flight, another
    // pending resume, or an asynchronous wait pending (from its call on) does not. A synchronous
    // call sleeps all the same: those continuations cannot run meanwhile either way.
    plain.asyncSteps = 2;
    plain.runnable = 1;
    expect(plain.resumeDozeNs(2)).toBe(7e6);
    plain.asyncSteps = 3;
    expect(plain.resumeDozeNs(2)).toBe(0);
    plain.asyncSteps = 2;
    plain.runnable = 2;
    expect(plain.resumeDozeNs(2)).toBe(0);
    plain.runnable = 1;
    let met = false;
    const waiting = plain.wait(() => met, 0, () => 'a wait for memory');
    expect(plain.resumeDozeNs(2)).toBe(0);
    expect(plain.syncDozeNs()).toBe(7e6);
    met = true;
    await waiting;
    // Its continuation (this code) counts as runnable until the microtasks drain.
    expect(plain.resumeDozeNs(2)).toBe(0);
    await new Promise((resolve) => nextTick(resolve));
    expect(plain.resumeDozeNs(2)).toBe(7e6);
    plain.asyncSteps = 0;
    plain.runnable = 0;
    // Connections to other nodes, a hook to run before a blocking wait or before a sleep: never.
    const hooks: Array<(w: Waiter) => void> = [(w) => w.network(() => false, () => undefined), (w) => w.beforeBlocking(() => undefined), (w) => w.beforeSleep(() => true)];
    for (const hook of hooks) {
      const w = new Waiter(segment, 0, 50, false, 7);
      hook(w);
      expect(w.syncDozeNs()).toBe(0);
    }
  });
});
