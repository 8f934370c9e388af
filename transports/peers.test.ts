/**
 * A LazyEndpoint (issue 12.4) bound late to a real endpoint (the self
 * endpoint over a real heap): operations issued before the binding run on it
 * in their order once it is bound, puts and sends are copies (the caller's
 * data may change at once), a flush completes the queued puts, and a binding
 * that fails fails every queued operation and every later one, sends too. And
 * the PeerTable: a synchronous wait binds an endpoint with a send queued on it
 * (not one a team only prepared), and a late failure of the first, asynchronous
 * request for its card harms nothing once it is bound.
 */
import { describe, expect, it } from 'vitest';
import { AtomicOp, type MessageSink } from './endpoint.js';
import { LazyEndpoint, PeerTable } from './peers.js';
import type { PeerCard, RankTransports, RegisteredTransport } from './registry.js';
import { SelfEndpoint } from './self.js';
import { dtypeOf } from '../core/codec.js';

const DTYPE_INT32 = dtypeOf(new Int32Array(0));

const PLANNED = { name: 'dsm', attrs: { latency: 4e-5, bandwidth: 1.5e9 } };

function late(): { lazy: LazyEndpoint; asked: number[]; heap: Int32Array; got: Array<[number, number[]]>; self: SelfEndpoint } {
  const asked: number[] = [];
  const heap = new ArrayBuffer(1024);
  const got: Array<[number, number[]]> = [];
  const sink: MessageSink = { arrived: (_source, tag, _dtype, payload) => void got.push([tag, Array.from(payload as Int32Array)]) };
  const self = new SelfEndpoint(3, heap, new ArrayBuffer(64), sink);
  const lazy = new LazyEndpoint(3, PLANNED, { bindOne: (r) => void asked.push(r), bindSync: () => undefined });
  return { lazy, asked, heap: new Int32Array(heap), got, self };
}

describe('LazyEndpoint', () => {
  it('names its planned transport and promises no mapping until bound', () => {
    const { lazy, asked } = late();
    expect(lazy.name).toBe('dsm');
    expect(lazy.bound).toBe(false);
    expect(lazy.map()).toBeNull();
    expect(lazy.caps.putCompleteOnReturn).toBe(false);
    expect(lazy.flush()).toBeUndefined();
    expect(asked).toEqual([]);
  });

  it('runs what was issued before the binding in order, on copies, once bound', async () => {
    const { lazy, asked, heap, got, self } = late();
    const src = Int32Array.of(7, 8);
    lazy.put(0, src);
    src.fill(0); // reusable at once: the put took a copy
    const dst = new Int32Array(2);
    const read = lazy.get(0, dst);
    const old = lazy.atomic(AtomicOp.FETCH_ADD, DTYPE_INT32, 4, 5, 0);
    const msg = Int32Array.of(1, 2, 3);
    const sent = lazy.send(9, DTYPE_INT32, msg, true);
    msg.fill(-1);
    const flushed = lazy.flush();
    expect(asked).toEqual([3]); // one binding asked for, at the first operation
    expect(sent.done).toBe(false);
    expect(heap[0]).toBe(0);
    lazy.bindTo(self);
    await Promise.all([read, flushed]);
    expect(Array.from(dst)).toEqual([7, 8]); // the get ran after the put issued before it
    expect(await old).toBe(8);
    expect(Array.from(heap.subarray(0, 2))).toEqual([7, 13]);
    expect(sent.done).toBe(true);
    expect(got).toEqual([[9, [1, 2, 3]]]);
    expect(lazy.bound).toBe(true);
    expect(lazy.name).toBe(self.name);
    // Bound: operations go straight through.
    lazy.put(8, Int32Array.of(42));
    expect(heap[2]).toBe(42);
  });

  it('reports what a fence queued before the binding failed with at the next flush (nobody waits for a fence)', async () => {
    const { lazy, heap } = late();
    // An endpoint whose fence completes the puts before it, one of which the target refused.
    class Refusing extends SelfEndpoint {
      fence(): void {
        throw new Error('a put was refused there');
      }
    }
    const refusing = new Refusing(3, heap.buffer as ArrayBuffer, new ArrayBuffer(64), { arrived: () => undefined });
    lazy.put(0, Int32Array.of(5));
    lazy.fence();
    lazy.put(4, Int32Array.of(6)); // after the fence: flushed all the same
    const flushed = lazy.flush();
    lazy.bindTo(refusing);
    await expect(flushed).rejects.toThrow(/a put was refused there/);
    expect([heap[0], heap[1]]).toEqual([5, 6]);
    // Reported once; bound now, the fence goes straight through and its error to its caller.
    expect(lazy.flush()).toBeUndefined();
    expect(() => lazy.fence()).toThrow(/a put was refused there/);
  });

  it('fails every queued operation, and every later one, when the binding fails', async () => {
    const { lazy } = late();
    lazy.put(0, Int32Array.of(1));
    const read = lazy.get(0, new Int32Array(1));
    const sent = lazy.send(1, DTYPE_INT32, Int32Array.of(1), false);
    const flushed = lazy.flush();
    lazy.fail(new Error('rank 3 is unreachable: no route'));
    await expect(read).rejects.toThrow(/unreachable/);
    await expect(flushed).rejects.toThrow(/unreachable/);
    await Promise.resolve();
    expect(() => sent.done).toThrow(/unreachable/);
    expect(() => lazy.put(0, Int32Array.of(1))).toThrow(/unreachable/);
    await expect(lazy.atomic(AtomicOp.FETCH, DTYPE_INT32, 0, 0, 0) as Promise<number>).rejects.toThrow(/unreachable/);
  });
});

describe('PeerTable', () => {
  // Two ranks on two nodes; rank 1's transport binds a self endpoint (over its own heap) so that its sends are seen.
  function table(): { peers: PeerTable; got: number[][]; reject: (e: Error) => void } {
    const got: number[][] = [];
    const sink: MessageSink = { arrived: (_source, _tag, _dtype, payload) => void got.push(Array.from(payload as Int32Array)) };
    const card = (r: number): PeerCard => ({ node: `node${r}`, nodeIndex: r }) as PeerCard;
    const transport = { name: 'ucx', attrs: PLANNED.attrs, bind: (r: number) => new SelfEndpoint(r, new ArrayBuffer(64), new ArrayBuffer(64), sink) } as unknown as RegisteredTransport;
    let reject: (e: Error) => void = () => undefined;
    const peers = new PeerTable({
      mine: { rank: 0 } as RankTransports,
      nodeOf: Int32Array.of(0, 1),
      known: new Map([[0, card(0)]]),
      planned: () => transport,
      plan: () => transport,
      fetch: () => new Promise<PeerCard[]>((_, no) => (reject = no)),
      fetchSync: (ranks) => ranks.map(card),
      links: null,
      firstOf: (node) => node,
    });
    return { peers, got, reject: (e) => reject(e) };
  }

  it('a synchronous wait binds an endpoint with a send queued on it, and a late failure of its first request harms nothing', async () => {
    const { peers, got, reject } = table();
    const lazy = peers.endpoints[1] as LazyEndpoint;
    const sent = lazy.send(5, DTYPE_INT32, Int32Array.of(4, 2), false); // binding starts: the card request is on its way
    const prepared = peers.prepare([1]); // as a team's first collective takes it
    expect(sent.done).toBe(false);
    expect(peers.busy()).toBe(true);
    peers.bindPendingSync(() => 'a test wait');
    expect(lazy.bound).toBe(true);
    expect(sent.done).toBe(true);
    expect(got).toEqual([[4, 2]]);
    expect(peers.busy()).toBe(false); // bound: a later wait may sleep
    reject(new Error('the controller went away'));
    await expect(prepared).resolves.toBeUndefined();
    lazy.send(6, DTYPE_INT32, Int32Array.of(7), false);
    expect(got).toEqual([[4, 2], [7]]);
  });

  it('connects an endpoint blocking when a synchronous send asks it to, before anything is queued on it', () => {
    const { peers, got } = table();
    const lazy = peers.endpoints[1] as LazyEndpoint;
    lazy.connectSync(() => 'sendSync');
    expect(lazy.bound).toBe(true);
    expect(lazy.send(5, DTYPE_INT32, Int32Array.of(3), false).done).toBe(true);
    expect(got).toEqual([[3]]);
  });

  it('leaves endpoints that only a team prepared to the event loop', () => {
    const { peers } = table();
    void peers.prepare([1]);
    peers.bindPendingSync(() => 'a test wait');
    expect((peers.endpoints[1] as LazyEndpoint).bound).toBe(false);
  });
});
