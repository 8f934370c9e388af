/**
 * The matching engine (Messenger) in one process, over fakes of what it is
 * built on (runtime/bootstrap.ts): the rank's queue is a list of records
 * handed to its RecordSink side (each in its own "ring" memory, scribbled
 * over once consumed, as a real ring is reused), transports that deliver
 * themselves call its MessageSink side, endpoints record sends.
 *
 * The world: 4 ranks, this one is rank 0; the node's local ranks are world
 * ranks 0 and 2 (rings 0 and 1); ranks 1 and 3 are on other nodes, their
 * messages relayed by the node agent (ring 2, with the origin's world rank).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encode, moveCtor } from '../core/codec.js';
import { isMprunError } from '../core/errors.js';
import type { TypedArray } from '../core/types.js';
import { SENT, type Endpoint, type EndpointCaps, type SendCompletion, type TransportInstance } from '../transports/endpoint.js';
import type { ShmMessages } from '../transports/shm/messages.js';
import { RECV_NOT_THIS, type NodeQueues, type RecordSink } from '../transports/shm/queue.js';
import { ANY_SOURCE, ANY_TAG, INTERNAL_TAG, Messenger } from './p2p.js';
import type { Waiter } from './wait.js';

const ME = 0;
const LOCAL_PEER = 2; // ring 1
const GATEWAY_RING = 2;
const PAD = 64;

type Record = (sink: RecordSink) => void;

/** The rank's own queue: records polled one at a time. */
class FakeInbox {
  readonly records: Record[] = [];
  /** The sleep each call of the native receive path was allowed (its dozeNs). */
  readonly dozes: number[] = [];

  worldRanks(): void {}

  /** The native receive path declines every record here: these tests drive the matching engine's own. */
  recvInto(_into: TypedArray, _dtype: number, _source: number, _tag: number, _spinNs: number, dozeNs: number): number {
    this.dozes.push(dozeNs);
    return RECV_NOT_THIS;
  }

  poll(sink: RecordSink): boolean {
    const r = this.records.shift();
    if (r === undefined) return false;
    r(sink);
    return true;
  }

  /** A message from local `ring` (origin -1) or relayed by the agent (ring 2, origin its world rank), in fragments of at most `fragment` bytes. */
  push(from: number, tag: number, value: unknown, fragment = Infinity): void {
    const ring = from === ME ? 0 : from === LOCAL_PEER ? 1 : GATEWAY_RING;
    const origin = ring === GATEWAY_RING ? from : -1;
    const e = encode(value);
    const dtype = e.dtype;
    const bytes = new Uint8Array(e.payload.buffer.slice(e.payload.byteOffset, e.payload.byteOffset + e.payload.byteLength));
    /** One piece in ring memory of its own (a view over the whole "segment", of the payload's type), scribbled over once consumed. */
    const piece = (from: number, to: number, record: (view: TypedArray, off: number, len: number) => void): Record => {
      const seg = new ArrayBuffer(PAD + Math.ceil((to - from) / 8) * 8 + PAD);
      new Uint8Array(seg).set(bytes.subarray(from, to), PAD);
      const view = new (moveCtor(dtype))(seg);
      return () => {
        record(view, PAD, to - from);
        new Uint8Array(seg).fill(0xee);
      };
    };
    if (bytes.byteLength <= fragment) {
      this.records.push((s) => piece(0, bytes.byteLength, (v, o, n) => s.eager(ring, origin, tag, dtype, v, o, n))(s));
      return;
    }
    for (let off = 0; off < bytes.byteLength; off += fragment) {
      const end = Math.min(bytes.byteLength, off + fragment);
      const first = off === 0;
      this.records.push((s) => piece(off, end, (v, o, n) => (first ? s.first(ring, origin, tag, dtype, bytes.byteLength, v, o, n) : s.next(ring, v, o, n)))(s));
    }
  }
}

/** The rank's waits: drive progress on every turn of the event loop until ready, or until closed. */
class FakeWaiter {
  #progress: () => boolean = () => false;
  #closed = false;
  attach(progress: () => boolean): void {
    this.#progress = progress;
  }
  async wait(ready: () => boolean, _wake: number, what: () => string): Promise<void> {
    await null;
    while (!ready()) {
      if (this.#closed) throw new Error(`closed while waiting: ${what()}`);
      this.#progress();
      if (ready()) return;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  close(): void {
    this.#closed = true;
  }
  // The synchronous forms' side.
  static readonly DOZE_NS = 7e6;
  syncDozeNs(): number {
    return FakeWaiter.DOZE_NS;
  }
  checkSyncCall(): void {}
  blockUntil(ready: () => boolean): void {
    while (!ready()) if (!this.#progress() && !ready()) throw new Error('a synchronous wait that nothing can end');
  }
}

interface Sent {
  tag: number;
  dtype: number;
  payload: TypedArray;
  stable: boolean;
}

class FakeEndpoint implements Endpoint {
  readonly name = 'fake';
  readonly caps = {} as EndpointCaps;
  readonly sent: Sent[] = [];
  /** Completions handed out for sends that did not finish at once (when `blocked`). */
  readonly pending: Array<{ done: boolean }> = [];
  blocked = false;
  /** Set for the rank itself: a send is handed to its own matching engine. */
  loopback: Messenger | null = null;

  send(tag: number, dtype: number, payload: TypedArray, stable: boolean): SendCompletion {
    this.sent.push({ tag, dtype, payload, stable });
    if (this.loopback !== null) this.loopback.arrived(ME, tag, dtype, payload);
    if (!this.blocked) return SENT;
    const c = { done: false };
    this.pending.push(c);
    return c;
  }
  map(): null {
    return null;
  }
  mapScratch(): null {
    return null;
  }
  put(): void {
    throw new Error('not in these tests');
  }
  get(): undefined {
    throw new Error('not in these tests');
  }
  atomic(): number {
    throw new Error('not in these tests');
  }
  flush(): undefined {
    return undefined;
  }
  close(): void {}
}

/** A transport that delivers itself (a network): queued deliveries go to the sink one per progress(). */
class FakeNetwork implements TransportInstance {
  readonly name = 'net';
  readonly queue: Array<() => void> = [];
  progress(): boolean {
    const d = this.queue.shift();
    if (d === undefined) return false;
    d();
    return true;
  }
  busy(): boolean {
    return this.queue.length > 0;
  }
  close(): void {}
}

const waiters: FakeWaiter[] = [];
afterEach(() => {
  for (const w of waiters.splice(0)) w.close();
});

function setup() {
  const inbox = new FakeInbox();
  const waiter = new FakeWaiter();
  waiters.push(waiter);
  const endpoints = [0, 1, 2, 3].map(() => new FakeEndpoint());
  const shm = { busy: false, stuck: false, progressed: 0 };
  const shmMessages = {
    busy: () => shm.busy,
    progress: () => (shm.progressed++, false),
    get stuck() {
      return shm.stuck;
    },
  };
  const net = new FakeNetwork();
  const m = new Messenger({
    size: 4,
    inbox: inbox as unknown as NodeQueues,
    waiter: waiter as unknown as Waiter,
    endpoints,
    worldOfLocal: [0, LOCAL_PEER],
    shm: shmMessages as unknown as ShmMessages,
    others: [net],
    recvPollNs: 0,
  });
  endpoints[ME]!.loopback = m;
  /** A message delivered by the network transport at its next progress(). */
  const deliver = (source: number, tag: number, value: unknown): void => {
    const e = encode(value);
    const payload = e.payload.slice();
    const dtype = e.dtype;
    net.queue.push(() => m.arrived(source, tag, dtype, payload));
  };
  return { m, inbox, endpoints, shm, net, deliver };
}

/** Lets pending waits run a few turns of the event loop. */
async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function tracked<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  return { promise: p, settled: () => done };
}

describe('Messenger: matching', () => {
  it('a receive takes the earliest matching message; messages of one pair never overtake each other', async () => {
    const { m, inbox } = setup();
    inbox.push(LOCAL_PEER, 5, 'a');
    inbox.push(LOCAL_PEER, 6, 'b');
    inbox.push(LOCAL_PEER, 5, 'c');
    expect(await m.recv(LOCAL_PEER, 5)).toEqual({ data: 'a', source: LOCAL_PEER, tag: 5 });
    expect(await m.recv(LOCAL_PEER, 5)).toEqual({ data: 'c', source: LOCAL_PEER, tag: 5 }); // 'b' waits, unexpected
    expect(await m.recv(ANY_SOURCE, ANY_TAG)).toEqual({ data: 'b', source: LOCAL_PEER, tag: 6 });
    // Local and relayed sources interleaved: ANY_SOURCE sees arrival order, each pair in its own order.
    inbox.push(LOCAL_PEER, 1, 'x1');
    inbox.push(3, 1, 'y1');
    inbox.push(1, 1, 'z1');
    inbox.push(3, 1, 'y2');
    inbox.push(LOCAL_PEER, 1, 'x2');
    expect((await m.recv(3, 1)).data).toBe('y1');
    const rest = [];
    for (let i = 0; i < 4; i++) rest.push(await m.recv(ANY_SOURCE, 1));
    expect(rest.map((r) => [r.source, r.data])).toEqual([[LOCAL_PEER, 'x1'], [1, 'z1'], [3, 'y2'], [LOCAL_PEER, 'x2']]);
  });

  it('posted receives match in posting order, with ANY_SOURCE and ANY_TAG, whatever carries the message', async () => {
    const { m, inbox, deliver } = setup();
    const r1 = tracked(m.recv(3, 9));
    const r2 = tracked(m.recv(ANY_SOURCE, 7));
    const r3 = tracked(m.recv(LOCAL_PEER, ANY_TAG));
    const r4 = tracked(m.recv(ANY_SOURCE, ANY_TAG));
    expect(m.busy()).toBe(true);
    await turns();
    expect([r1, r2, r3, r4].some((r) => r.settled())).toBe(false);
    // One at a time (transports are not ordered among each other, only each pair is).
    inbox.push(LOCAL_PEER, 7, 'r2, r3 and r4 match: to r2, posted first');
    expect((await r2.promise).data).toBe('r2, r3 and r4 match: to r2, posted first');
    inbox.push(LOCAL_PEER, 8, 'to r3');
    expect((await r3.promise).data).toBe('to r3');
    expect(r4.settled() || r1.settled()).toBe(false);
    deliver(3, 7, 'to r4');
    expect(await r4.promise).toEqual({ data: 'to r4', source: 3, tag: 7 });
    deliver(3, 9, 'to r1');
    expect(await r1.promise).toEqual({ data: 'to r1', source: 3, tag: 9 });
    expect(m.busy()).toBe(false);
  });

  it('unexpected messages wait in arrival order; probe sees them without taking them', async () => {
    const { m, inbox } = setup();
    m.arrived(1, 4, encode('n1').dtype, encode('n1').payload.slice());
    inbox.push(LOCAL_PEER, 4, Int16Array.of(1, 2));
    inbox.push(LOCAL_PEER, 2, 'p2');
    expect(m.probe(ANY_SOURCE, ANY_TAG)).toEqual({ source: 1, tag: 4 });
    expect(m.probe(LOCAL_PEER, ANY_TAG)).toEqual({ source: LOCAL_PEER, tag: 4 });
    expect(m.probe(LOCAL_PEER, 2)).toEqual({ source: LOCAL_PEER, tag: 2 });
    expect(m.probe(3, ANY_TAG)).toBe(null);
    expect(inbox.records.length).toBe(0); // probe drained the queue
    expect((await m.recv(ANY_SOURCE, 2)).data).toBe('p2');
    expect((await m.recv(LOCAL_PEER, 4)).data).toEqual(Int16Array.of(1, 2)); // copied out of the ring before it was reused
    expect((await m.recv()).data).toBe('n1');
    expect(m.probe()).toBe(null);
  });

  it('a send to itself is received like any other', async () => {
    const { m } = setup();
    await m.sends.send(ME, { self: true }, 3);
    await m.sends.send(ME, Float32Array.of(1.5), 3);
    expect(await m.recv(ME, 3)).toEqual({ data: { self: true }, source: ME, tag: 3 });
    expect((await m.recv(ANY_SOURCE, 3)).data).toEqual(Float32Array.of(1.5));
  });

  it('rejects bad ranks and tags; tags from INTERNAL_TAG up are not the user\'s', () => {
    const { m } = setup();
    expect(() => m.sends.send(4, 1)).toThrow(RangeError);
    expect(() => m.sends.send(-1, 1)).toThrow(/destination -1 is not a rank of this world \(size 4\)/);
    expect(() => m.sends.send(1, 1, -1)).toThrow(RangeError);
    expect(() => m.sends.send(1, 1, 1.5)).toThrow(RangeError);
    expect(() => m.sends.send(1, 1, INTERNAL_TAG)).toThrow(/tag must be an integer from 0 to/);
    expect(() => m.recv(4, 0)).toThrow(/source 4 is not a rank/);
    expect(() => m.recv(ANY_SOURCE, INTERNAL_TAG)).toThrow(RangeError);
    expect(() => m.recvInto([] as unknown as Float64Array)).toThrow(/recvInto needs a typed array/);
  });
});

describe('Messenger: internal tags', () => {
  it('never match a user receive, ANY_TAG included, nor land in a recvInto buffer; takeInternal gets them by source and tag', async () => {
    const { m, inbox, deliver } = setup();
    const T = INTERNAL_TAG + 3;
    const any = tracked(m.recv(ANY_SOURCE, ANY_TAG));
    const into = new Float64Array(4);
    const intoAny = tracked(m.recvInto(into, ANY_SOURCE, ANY_TAG));
    inbox.push(LOCAL_PEER, T, Float64Array.of(9, 9));
    deliver(1, T, 'net internal');
    inbox.push(3, T, 'relayed internal');
    m.arrived(LOCAL_PEER, T + 1, encode('sink internal').dtype, encode('sink internal').payload.slice());
    await turns(10);
    expect(any.settled() || intoAny.settled()).toBe(false);
    expect(into).toEqual(new Float64Array(4));
    expect(m.probe()).toBe(null);
    expect(m.takeInternal(LOCAL_PEER, T)?.data).toEqual(Float64Array.of(9, 9));
    expect(m.takeInternal(LOCAL_PEER, T)).toBe(null);
    expect(m.takeInternal(1, T)).toEqual({ data: 'net internal', source: 1, tag: T });
    expect(m.takeInternal(3, T)?.data).toBe('relayed internal');
    expect(m.takeInternal(LOCAL_PEER, T + 1)?.data).toBe('sink internal');
    inbox.push(LOCAL_PEER, 0, 'user');
    inbox.push(LOCAL_PEER, 1, Float64Array.of(1));
    expect((await any.promise).data).toBe('user');
    expect((await intoAny.promise).data).toEqual(Float64Array.of(1));
  });

  it('a receive\'s fast path sets internal messages aside; sendInternal sends a copy-on-need payload', async () => {
    const { m, inbox, endpoints } = setup();
    const T = INTERNAL_TAG + 1;
    inbox.push(LOCAL_PEER, T, 'first');
    inbox.push(LOCAL_PEER, 0, 'user');
    expect((await m.recv()).data).toBe('user');
    expect(m.takeInternal(LOCAL_PEER, T)?.data).toBe('first');
    const a = Int32Array.of(1, 2);
    m.sendInternal(3, a, T);
    expect(endpoints[3]!.sent[0]).toMatchObject({ tag: T, payload: a, stable: false });
  });
});

describe('Messenger: recvInto', () => {
  const landed = (data: TypedArray, into: TypedArray): boolean => data.buffer === into.buffer && data.byteOffset === into.byteOffset;

  it('lands a message of its type in the buffer: at once, posted, fragmented, or delivered by a transport', async () => {
    const { m, inbox, deliver } = setup();
    const into = new Float64Array(8);
    inbox.push(LOCAL_PEER, 0, Float64Array.of(1, 2, 3));
    const a = await m.recvInto(into, LOCAL_PEER, 0);
    expect(landed(a.data, into) && a.data.length === 3).toBe(true);
    expect([...into.subarray(0, 3)]).toEqual([1, 2, 3]);
    // Posted first, then a message in 3 fragments of 8 bytes ...
    const p = m.recvInto(into, 3, 1);
    inbox.push(3, 1, Float64Array.of(4, 5, 6), 8);
    const b = await p;
    expect(landed(b.data, into) && [...b.data].join() === '4,5,6').toBe(true);
    // ... and one a transport delivers itself.
    const q = m.recvInto(into, 1, ANY_TAG);
    deliver(1, 2, Float64Array.of(7, 8, 9, 10));
    const c = await q;
    expect(c.tag).toBe(2);
    expect(landed(c.data, into) && [...c.data].join() === '7,8,9,10').toBe(true);
  });

  it('a large message is matched at its first fragment: a message arriving between its fragments takes neither its receive nor its buffer', async () => {
    // Posted receives: the first fragment claims the first; the message between fragments goes to the second.
    {
      const { m, inbox } = setup();
      const buf1 = new Float64Array(8);
      const buf2 = new Float64Array(8);
      const r1 = tracked(m.recvInto(buf1, ANY_SOURCE));
      const r2 = tracked(m.recvInto(buf2, ANY_SOURCE));
      inbox.push(LOCAL_PEER, 0, new Float64Array(8).fill(1), 16);
      inbox.push(1, 0, Float64Array.of(2, 2));
      inbox.records.splice(1, 0, inbox.records.pop()!); // between the first fragment and the rest
      const [a, b] = await Promise.all([r1.promise, r2.promise]);
      expect([a.source, ...a.data]).toEqual([LOCAL_PEER, 1, 1, 1, 1, 1, 1, 1, 1]);
      expect(landed(a.data, buf1)).toBe(true);
      expect([b.source, ...b.data]).toEqual([1, 2, 2]);
      expect([...buf2.subarray(0, 2)]).toEqual([2, 2]);
    }
    // The fast path of a receive with nothing posted: the message between fragments waits, unexpected.
    {
      const { m, inbox } = setup();
      const buf1 = new Float64Array(8);
      const buf2 = new Float64Array(8);
      inbox.push(LOCAL_PEER, 0, new Float64Array(8).fill(1), 16);
      inbox.push(1, 0, Float64Array.of(2, 2));
      inbox.records.splice(1, 0, inbox.records.pop()!);
      const a = m.recvIntoSync(buf1, ANY_SOURCE);
      expect([a.source, ...a.data]).toEqual([LOCAL_PEER, 1, 1, 1, 1, 1, 1, 1, 1]);
      expect(landed(a.data, buf1)).toBe(true);
      const b = m.recvIntoSync(buf2, ANY_SOURCE);
      expect([b.source, ...b.data]).toEqual([1, 2, 2]);
      expect([...buf1]).toEqual(new Array(8).fill(1));
    }
    // The fast path ends with the message half here: its receive waits for the rest, a later one takes the other.
    {
      const { m, inbox } = setup();
      const buf1 = new Float64Array(8);
      const buf2 = new Float64Array(8);
      inbox.push(LOCAL_PEER, 0, new Float64Array(8).fill(1), 16);
      const rest = inbox.records.splice(1);
      inbox.push(1, 0, Float64Array.of(2, 2));
      const r1 = tracked(m.recvInto(buf1, ANY_SOURCE));
      await turns();
      expect(r1.settled()).toBe(false);
      const b = await m.recvInto(buf2, ANY_SOURCE);
      expect([b.source, ...b.data]).toEqual([1, 2, 2]);
      expect(landed(b.data, buf2)).toBe(true);
      inbox.records.push(...rest);
      const a = await r1.promise;
      expect([a.source, ...a.data]).toEqual([LOCAL_PEER, 1, 1, 1, 1, 1, 1, 1, 1]);
      expect(landed(a.data, buf1)).toBe(true);
      expect([...buf2.subarray(0, 2)]).toEqual([2, 2]);
    }
  });

  it("a receive withdrawn while its claimed message is half there leaves the rest out of its buffer", async () => {
    const { m, inbox } = setup();
    const buf = new Float64Array(8);
    const r = m.recvInto(buf, LOCAL_PEER);
    inbox.push(LOCAL_PEER, 0, new Float64Array(8).fill(1), 16);
    const rest = inbox.records.splice(1);
    await turns(); // the first fragment claimed the receive and landed in its buffer
    expect([...buf.subarray(0, 2)]).toEqual([1, 1]);
    waiters[waiters.length - 1]!.close(); // its wait fails (the job aborting): the receive is withdrawn
    await expect(r).rejects.toThrow(/closed while waiting/);
    inbox.records.push(...rest);
    expect(m.probe()).toEqual({ source: LOCAL_PEER, tag: 0 }); // the message, unexpected now
    expect([...buf.subarray(2)]).toEqual([0, 0, 0, 0, 0, 0]); // the caller's buffer again: untouched
  });

  it('copies a message that came before the receive; another posted receive keeps its claim', async () => {
    const { m, inbox } = setup();
    inbox.push(LOCAL_PEER, 0, Uint16Array.of(5, 6));
    expect(m.probe()).not.toBe(null);
    const into = new Uint16Array(4);
    const r = await m.recvInto(into);
    expect(landed(r.data, into) && [...r.data].join() === '5,6').toBe(true);
    // An earlier plain receive matches first: the typed message goes to it, not into the buffer.
    const plain = m.recv(LOCAL_PEER, 0);
    const into2 = new Uint16Array(4);
    const later = tracked(m.recvInto(into2, LOCAL_PEER, 0));
    inbox.push(LOCAL_PEER, 0, Uint16Array.of(7));
    expect((await plain).data).toEqual(Uint16Array.of(7));
    await turns();
    expect(later.settled()).toBe(false);
    expect(into2[0]).toBe(0);
    inbox.push(LOCAL_PEER, 0, Uint16Array.of(8));
    expect([...(await later.promise).data]).toEqual([8]);
  });

  it('a subclass of a typed array receives messages of its base type, posted or not (and is sent as one)', async () => {
    class Samples extends Float32Array {}
    const { m, inbox } = setup();
    inbox.push(LOCAL_PEER, 0, Float32Array.of(1.5, 2.5));
    expect(m.probe()).not.toBe(null);
    const into = new Samples(4);
    const r = await m.recvInto(into, LOCAL_PEER, 0);
    expect(landed(r.data, into) && [...r.data].join() === '1.5,2.5').toBe(true);
    const p = m.recvInto(into, LOCAL_PEER, 1);
    inbox.push(LOCAL_PEER, 1, Samples.of(3.5));
    expect([...(await p).data]).toEqual([3.5]);
  });

  it('a message that does not fit, or of another type, is taken and reported as ERR_MPRUN_TRUNCATE', async () => {
    const { m, inbox, deliver } = setup();
    const into = new Float64Array(2);
    const truncate = (e: unknown): boolean => isMprunError(e, 'ERR_MPRUN_TRUNCATE');
    // Posted, then too long (eager; in fragments; from a transport).
    let p = m.recvInto(into, LOCAL_PEER, 0);
    inbox.push(LOCAL_PEER, 0, Float64Array.of(1, 2, 3));
    await expect(p).rejects.toThrow(/recvInto: a message of 3 elements from rank 2 \(tag 0\) does not fit in 2/);
    p = m.recvInto(into, 3, 0);
    inbox.push(3, 0, new Float64Array(100), 64);
    await expect(p).rejects.toSatisfy(truncate);
    p = m.recvInto(into, 1, 0);
    deliver(1, 0, new Float64Array(3));
    await expect(p).rejects.toSatisfy(truncate);
    // Unexpected, then too long.
    inbox.push(LOCAL_PEER, 1, new Float64Array(5));
    expect(m.probe()).not.toBe(null);
    await expect(m.recvInto(into, LOCAL_PEER, 1)).rejects.toThrow(/5 elements .* does not fit in 2/);
    // Another typed array type, or a msgpack value.
    p = m.recvInto(into);
    inbox.push(LOCAL_PEER, 0, Int32Array.of(1));
    await expect(p).rejects.toThrow(/recvInto\(Float64Array\) matched a message of type Int32Array from rank 2 \(tag 0\)/);
    inbox.push(LOCAL_PEER, 0, 'text');
    await expect(m.recvInto(into)).rejects.toThrow(/matched a message of type string/);
    // Every one of them was taken; the buffer was never written past its end.
    expect(m.probe()).toBe(null);
    expect(into.length).toBe(2);
  });

  it('a fragment without its start is a protocol error', () => {
    const { m, inbox } = setup();
    inbox.records.push((s) => s.next(1, new Uint8Array(8), 0, 8));
    expect(() => m.recv()).toThrow(/a message fragment from local rank 1 without its start/);
  });
});

describe('Messenger: sends and progress', () => {
  it('typed arrays go as themselves (stable), msgpack as a copy; a send that cannot finish resolves when its transport completes it', async () => {
    const { m, endpoints } = setup();
    const a = Float64Array.of(1, 2);
    await m.sends.send(1, a, 4);
    expect(endpoints[1]!.sent[0]).toEqual({ tag: 4, dtype: encode(a).dtype, payload: a, stable: true });
    await m.sends.send(1, { v: 1 }, 5);
    expect(endpoints[1]!.sent[1]).toMatchObject({ tag: 5, dtype: 0, stable: false });
    endpoints[LOCAL_PEER]!.blocked = true;
    const s = tracked(m.sends.send(LOCAL_PEER, a));
    await turns();
    expect(s.settled()).toBe(false);
    endpoints[LOCAL_PEER]!.pending[0]!.done = true;
    await s.promise;
  });

  it('while sends are in flight, receives do not jump the queue; a stuck queue drains our own', async () => {
    const { m, inbox, shm } = setup();
    inbox.push(LOCAL_PEER, 0, 'waiting');
    // Nothing pending, nothing stuck: progress leaves the queue alone.
    expect(m.progress()).toBe(false);
    expect(inbox.records.length).toBe(1);
    shm.busy = true;
    expect(m.busy()).toBe(true);
    // Stuck: our queue is drained (its messages wait, unexpected) so a peer blocked sending to us moves.
    shm.stuck = true;
    m.progress();
    expect(shm.progressed).toBe(1);
    expect(inbox.records.length).toBe(0);
    // With a send in flight a receive is posted (no fast path) and progress matches it.
    shm.stuck = false;
    inbox.push(LOCAL_PEER, 0, 'next');
    expect((await m.recv(LOCAL_PEER, 0)).data).toBe('waiting');
    expect((await m.recv(LOCAL_PEER, 0)).data).toBe('next');
    shm.busy = false;
    expect(m.busy()).toBe(false);
  });
});

describe('Messenger: the synchronous receive', () => {
  it("lets the native receive sleep for the waiter's doze; the promise form never", async () => {
    const { m, inbox } = setup();
    const into = new Float64Array(2);
    inbox.push(LOCAL_PEER, 4, Float64Array.of(1, 2));
    const got = m.recvIntoSync(into, LOCAL_PEER, 4);
    expect([...got.data, got.source, got.tag]).toEqual([1, 2, LOCAL_PEER, 4]);
    inbox.push(LOCAL_PEER, 5, Float64Array.of(3));
    expect([...(await m.recvInto(into, LOCAL_PEER, 5)).data]).toEqual([3]);
    expect(inbox.dozes).toEqual([FakeWaiter.DOZE_NS, 0]);
  });
});
