/**
 * The agent's message relay: with a fake node queue (order per rank, full
 * queues, resuming when rung), and over a real control segment with the
 * gateway's door watched by its thread.
 */
import { describe, expect, it } from 'vitest';
import { HEADER_BYTES, ProtocolError, type Header } from './frames.js';
import { ControlSegment, WAKE_MESSAGE } from '../shm/control.js';
import { DoorWatch } from '../shm/door.js';
import { NodeQueues, type OutgoingMessage, type RecordSink } from '../shm/queue.js';
import type { TypedArray } from '../../core/types.js';
import { MessageRelay, type RelayQueues, type RoomSignal } from './relay.js';

/** A queue per rank that takes `room[l]` more messages (fragments: `fragment` bytes each); what it took, in order. */
class FakeQueues implements RelayQueues {
  readonly maxEager = 64;
  fragment = 16;
  readonly taken: Array<{ dest: number; tag: number; origin: number; bytes: number }> = [];
  constructor(readonly room: number[]) {}
  tryPost(dest: number, m: OutgoingMessage, eagerLimit: number, origin: number): boolean {
    const total = m.payload.byteLength;
    if (total <= eagerLimit) {
      if (this.room[dest]! <= 0) return false;
      this.room[dest]!--;
      this.taken.push({ dest, tag: m.tag, origin, bytes: total });
      return true;
    }
    while (m.offset < total) {
      if (this.room[dest]! <= 0) return false;
      this.room[dest]!--;
      const n = Math.min(this.fragment, total - m.offset);
      this.taken.push({ dest, tag: m.tag, origin, bytes: n });
      m.offset += n;
    }
    return true;
  }
}

/** A room signal rung by the test: counts arms; ring() calls the relay's pump as a consumer's ring would. */
class FakeRoom implements RoomSignal {
  arms = 0;
  closed = false;
  pump: () => void = () => undefined;
  arm(): void {
    this.arms++;
  }
  close(): void {
    this.closed = true;
  }
  ring(): void {
    this.pump();
  }
}

function relayOver(q: RelayQueues, nlocal: number): { r: MessageRelay; room: FakeRoom } {
  const room = new FakeRoom();
  const r = new MessageRelay(q, nlocal, (pump) => {
    room.pump = pump;
    return room;
  });
  return { r, room };
}

const DTYPE_U8 = 2; // codec: Uint8Array
const DTYPE_F64 = 9;
function msg(tag: number, origin: number, bytes = 8): Header {
  return { bytes: HEADER_BYTES + bytes, type: 10, aux: DTYPE_U8, id: origin, target: 0, offset: 0, length: bytes, arg: tag };
}

describe('MessageRelay', () => {
  it('relays at once while there is room, in arrival order', () => {
    const q = new FakeQueues([10, 10]);
    const { r, room } = relayOver(q, 2);
    for (const [l, tag] of [[0, 1], [1, 2], [0, 3]] as const) r.deliver(l, msg(tag, 7), new Uint8Array(8));
    expect(q.taken.map((t) => [t.dest, t.tag, t.origin])).toEqual([[0, 1, 7], [1, 2, 7], [0, 3, 7]]);
    expect(r.waiting).toBe(0);
    expect(room.arms).toBe(0); // never full: nothing to wait for
  });

  it('holds a full rank\'s messages in order, without holding up the other ranks, and resumes when rung', () => {
    const q = new FakeQueues([1, 10]);
    const { r, room } = relayOver(q, 2);
    r.deliver(0, msg(1, 5), new Uint8Array(8));
    r.deliver(0, msg(2, 5), new Uint8Array(8)); // rank 0's queue is full now
    r.deliver(0, msg(3, 6), new Uint8Array(8));
    r.deliver(1, msg(4, 6), new Uint8Array(8));
    expect(q.taken.map((t) => t.tag)).toEqual([1, 4]);
    expect(r.waiting).toBe(2);
    expect(room.arms).toBeGreaterThan(0); // waits for a ring
    room.ring(); // still full: nothing overtakes
    expect(q.taken.map((t) => t.tag)).toEqual([1, 4]);
    q.room[0] = 1;
    room.ring();
    expect(q.taken.map((t) => t.tag)).toEqual([1, 4, 2]);
    q.room[0] = 5;
    room.ring();
    expect(q.taken.map((t) => t.tag)).toEqual([1, 4, 2, 3]);
    expect(r.waiting).toBe(0);
  });

  it('looks once more after arming: room made before the arm rang nobody', () => {
    const q = new FakeQueues([0]);
    const room = new FakeRoom();
    const r = new MessageRelay(q, 1, (pump) => {
      room.pump = pump;
      room.arm = () => {
        room.arms++;
        q.room[0] = 1; // the consumer made room just before the arm
      };
      return room;
    });
    r.deliver(0, msg(1, 0), new Uint8Array(8));
    expect(room.arms).toBe(1);
    expect(q.taken.map((t) => t.tag)).toEqual([1]);
    expect(r.waiting).toBe(0);
  });

  it('resumes a large message fragment by fragment where the full queue stopped it', () => {
    const q = new FakeQueues([2]);
    const { r, room } = relayOver(q, 1);
    r.deliver(0, msg(9, 1, 100), new Uint8Array(100)); // 7 fragments of 16
    r.deliver(0, msg(10, 1), new Uint8Array(8));
    expect(q.taken.map((t) => t.bytes)).toEqual([16, 16]);
    q.room[0] = 100;
    room.ring();
    expect(q.taken.map((t) => t.bytes)).toEqual([16, 16, 16, 16, 16, 16, 4, 8]);
    expect(q.taken.at(-1)!.tag).toBe(10);
  });

  it('lands a MSG payload in an array of its type, and refuses unknown types and partial elements', () => {
    const { r } = relayOver(new FakeQueues([1]), 1);
    const f64 = r.landing(DTYPE_F64, 16);
    expect(f64).toBeInstanceOf(Float64Array);
    expect(f64.length).toBe(2);
    expect(() => r.landing(DTYPE_F64, 12)).toThrow(new ProtocolError('MSG of 12 bytes is not whole elements'));
    expect(() => r.landing(200, 8)).toThrow(/unknown type code 200/);
  });

  it('reuses a large message\'s landing buffer once it is relayed, never while it waits', () => {
    const q = new FakeQueues([0]);
    q.fragment = 1 << 20;
    const { r, room } = relayOver(q, 1);
    const a = r.landing(DTYPE_U8, 128 << 10);
    r.deliver(0, msg(1, 0, a.byteLength), a);
    expect(r.waiting).toBe(1);
    const b = r.landing(DTYPE_U8, 128 << 10);
    expect(b.buffer).not.toBe(a.buffer); // a still waits in the outbox
    q.room[0] = 10;
    room.ring();
    expect(r.waiting).toBe(0);
    const c = r.landing(DTYPE_F64, 100 << 10); // a fits it: reused, as a view of the right type and length
    expect(c.buffer).toBe(a.buffer);
    expect(c).toBeInstanceOf(Float64Array);
    expect(c.byteLength).toBe(100 << 10);
    expect(r.landing(DTYPE_U8, 8).buffer).not.toBe(b.buffer); // small ones are never spares
  });

  it('close() closes its signal', () => {
    const { r, room } = relayOver(new FakeQueues([0]), 1);
    r.deliver(0, msg(1, 0), new Uint8Array(8));
    r.close();
    expect(room.closed).toBe(true);
  });
});

/** Collects whole messages from a queue's records (eager or fragments). */
class Collect implements RecordSink {
  readonly got: Array<{ origin: number; tag: number; bytes: Uint8Array }> = [];
  #partial: { origin: number; tag: number; bytes: Uint8Array; filled: number } | null = null;
  eager(_p: number, origin: number, tag: number, _d: number, view: TypedArray, off: number, len: number): void {
    this.got.push({ origin, tag, bytes: new Uint8Array(view.buffer, view.byteOffset + off, len).slice() });
  }
  first(_p: number, origin: number, tag: number, _d: number, total: number, view: TypedArray, off: number, len: number): void {
    this.#partial = { origin, tag, bytes: new Uint8Array(total), filled: 0 };
    this.next(_p, view, off, len);
  }
  next(_p: number, view: TypedArray, off: number, len: number): void {
    const p = this.#partial!;
    p.bytes.set(new Uint8Array(view.buffer, view.byteOffset + off, len), p.filled);
    p.filled += len;
    if (p.filled === p.bytes.length) {
      this.got.push({ origin: p.origin, tag: p.tag, bytes: p.bytes });
      this.#partial = null;
    }
  }
}

/** Waits (letting the event loop run) until `done()` or `ms` pass; whether it held. */
async function waitFor(done: () => boolean, ms: number, step: () => void = () => undefined): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) {
    step();
    await new Promise((r) => setTimeout(r, 1));
  }
  return done();
}

/** Long enough that within a test only rings call back. */
const NO_SLICE_MS = 600_000;

describe('MessageRelay over a node queue, the gateway\'s door watched', () => {
  it('a message larger than the queue gets through: the consumer\'s room rings the door and the relay resumes', async () => {
    const { segment } = ControlSegment.create(1, 4096, 2);
    const relay = new MessageRelay(new NodeQueues(segment, segment.gateway), 1, (pump) => new DoorWatch(segment, segment.gateway, WAKE_MESSAGE, pump, NO_SLICE_MS));
    const rank = new NodeQueues(segment, 0);
    const sink = new Collect();
    try {
      const big = Uint8Array.from({ length: 40_000 }, (_, i) => (i * 31) & 0xff); // ten times the ring
      relay.deliver(0, msg(5, 3, big.length), big);
      relay.deliver(0, msg(6, 3, 8), Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
      expect(relay.waiting).toBe(2); // the ring holds a part of the first
      // The rank drains its queue as records come; only its rings resume the relay (no slice within the test).
      const drain = (): void => {
        while (rank.poll(sink));
      };
      expect(await waitFor(() => sink.got.length === 2, 10_000, drain)).toBe(true);
      expect(sink.got.map((m) => [m.origin, m.tag, m.bytes.length])).toEqual([[3, 5, big.length], [3, 6, 8]]);
      expect(sink.got[0]!.bytes).toEqual(big);
      expect(relay.waiting).toBe(0);
    } finally {
      relay.close();
    }
  });

  it('an armed watch that is never rung calls back after its slice: a lost ring costs a slice, not a hang', async () => {
    const { segment } = ControlSegment.create(1, 4096, 2);
    let calls = 0;
    const door = new DoorWatch(segment, segment.gateway, WAKE_MESSAGE, () => calls++, 20);
    try {
      door.arm();
      expect(await waitFor(() => calls > 0, 5_000)).toBe(true);
      await new Promise((r) => setTimeout(r, 60));
      expect(calls).toBe(1); // not armed again: no more calls
    } finally {
      door.close();
    }
  });

  it('an armed watch is called back when rung, once; a closed one calls nothing back', async () => {
    const { segment } = ControlSegment.create(1, 4096, 2);
    let calls = 0;
    const door = new DoorWatch(segment, segment.gateway, WAKE_MESSAGE, () => calls++, NO_SLICE_MS);
    door.arm();
    segment.ring(segment.gateway, WAKE_MESSAGE);
    expect(await waitFor(() => calls > 0, 5_000)).toBe(true); // armed and rung
    segment.ring(segment.gateway, WAKE_MESSAGE); // not armed: no call
    door.close();
    door.arm();
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toBe(1);
  });
});
