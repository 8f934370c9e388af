/**
 * flushAll, the quiet of a rank's endpoints (World.quiet, UcxTransport.quiet):
 * an endpoint whose flush throws at once (UCX's, after a refused put) neither
 * stops the other endpoints' flushes nor lets the quiet settle before they
 * have, and no flush's later rejection goes unhandled.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { flushAll, type MessageSink } from './endpoint.js';
import { LazyEndpoint } from './peers.js';
import { SelfEndpoint } from './self.js';

const PLANNED = { name: 'ucx', attrs: { latency: 4e-5, bandwidth: 1.5e9 } };
const sink: MessageSink = { arrived: () => undefined };

/** A real endpoint over its own heap whose flush throws at once, as UCX's does after a refused put. */
class RefusingEndpoint extends SelfEndpoint {
  override flush(): undefined {
    throw new Error('put to rank 2 refused');
  }
}

function endpoint(rank: number, heap: ArrayBuffer, bind: 'now' | 'later'): { ep: LazyEndpoint; self: SelfEndpoint } {
  const self = new SelfEndpoint(rank, heap, new ArrayBuffer(64), sink);
  const ep = new LazyEndpoint(rank, PLANNED, { bindOne: () => undefined, bindSync: () => undefined });
  if (bind === 'now') ep.bindTo(self);
  return { ep, self };
}

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => void unhandled.push(e);
process.on('unhandledRejection', onUnhandled);
afterEach(() => {
  expect(unhandled).toEqual([]);
});

describe('flushAll', () => {
  it('flushes every endpoint after one that throws, settles only once they all have, then rejects with that error', async () => {
    const first = endpoint(1, new ArrayBuffer(64), 'later');
    first.ep.put(0, Int32Array.of(11)); // queued until its binding: its flush is pending
    const refusing = new LazyEndpoint(2, PLANNED, { bindOne: () => undefined, bindSync: () => undefined });
    refusing.bindTo(new RefusingEndpoint(2, new ArrayBuffer(64), new ArrayBuffer(64), sink));
    const lastHeap = new ArrayBuffer(64);
    const last = endpoint(3, lastHeap, 'later');
    last.ep.put(0, Int32Array.of(33));

    const quiet = flushAll([first.ep, refusing, last.ep]);
    expect(quiet).toBeInstanceOf(Promise);
    let settled = false;
    quiet!.then(() => undefined, () => undefined).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(settled, 'settled while flushes were still pending').toBe(false);
    first.ep.bindTo(first.self);
    await new Promise((r) => setTimeout(r, 20));
    expect(settled, 'settled before the last endpoint was flushed').toBe(false);
    last.ep.bindTo(last.self);
    await expect(quiet).rejects.toThrow('put to rank 2 refused');
    // The endpoint after the one that threw was flushed too: its put is at its target.
    expect(new Int32Array(lastHeap)[0]).toBe(33);
  });

  it('waits for an earlier quiet too, and reports its failure once every flush settled', async () => {
    const earlier = Promise.reject(new Error('an earlier flush failed'));
    const pending = endpoint(1, new ArrayBuffer(64), 'later');
    pending.ep.put(0, Int32Array.of(5));
    const quiet = flushAll([pending.ep], earlier);
    let settled = false;
    quiet!.then(() => undefined, () => undefined).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    pending.ep.bindTo(pending.self);
    await expect(quiet).rejects.toThrow('an earlier flush failed');
  });

  it('has nothing to wait for when no endpoint has a flush pending; one pending flush is returned as it is', async () => {
    const done = endpoint(1, new ArrayBuffer(64), 'now');
    expect(flushAll([done.ep])).toBeUndefined();
    const one = endpoint(2, new ArrayBuffer(64), 'later');
    one.ep.put(0, Int32Array.of(1));
    const f = flushAll([done.ep, one.ep]);
    one.ep.bindTo(one.self);
    await expect(f).resolves.toBeUndefined();
  });
});
