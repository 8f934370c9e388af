/** The agent's message relay with a fake node queue: order per rank, full queues, retries. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HEADER_BYTES, ProtocolError, type Header } from './frames.js';
import type { OutgoingMessage } from '../shm/queue.js';
import { MessageRelay, RELAY_RETRY_MS, type RelayQueues } from './relay.js';

/** A queue per rank that takes `room[l]` more messages (fragments: `fragment` bytes each); what it took, in order. */
class FakeQueues implements RelayQueues {
  readonly maxEager = 64;
  readonly fragment = 16;
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

const DTYPE_U8 = 2; // codec: Uint8Array
const DTYPE_F64 = 9;
function msg(tag: number, origin: number, bytes = 8): Header {
  return { bytes: HEADER_BYTES + bytes, type: 10, aux: DTYPE_U8, id: origin, target: 0, offset: 0, length: bytes, arg: tag };
}

describe('MessageRelay', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('relays at once while there is room, in arrival order', () => {
    const q = new FakeQueues([10, 10]);
    const r = new MessageRelay(q, 2);
    for (const [l, tag] of [[0, 1], [1, 2], [0, 3]] as const) r.deliver(l, msg(tag, 7), new Uint8Array(8));
    expect(q.taken.map((t) => [t.dest, t.tag, t.origin])).toEqual([[0, 1, 7], [1, 2, 7], [0, 3, 7]]);
    expect(r.waiting).toBe(0);
  });

  it('holds a full rank\'s messages in order, without holding up the other ranks, and retries until they fit', () => {
    const q = new FakeQueues([1, 10]);
    const r = new MessageRelay(q, 2);
    r.deliver(0, msg(1, 5), new Uint8Array(8));
    r.deliver(0, msg(2, 5), new Uint8Array(8)); // rank 0's queue is full now
    r.deliver(0, msg(3, 6), new Uint8Array(8));
    r.deliver(1, msg(4, 6), new Uint8Array(8));
    expect(q.taken.map((t) => t.tag)).toEqual([1, 4]);
    expect(r.waiting).toBe(2);
    vi.advanceTimersByTime(RELAY_RETRY_MS * 5); // still full: keeps retrying, nothing overtakes
    expect(q.taken.map((t) => t.tag)).toEqual([1, 4]);
    q.room[0] = 1;
    vi.advanceTimersByTime(RELAY_RETRY_MS);
    expect(q.taken.map((t) => t.tag)).toEqual([1, 4, 2]);
    q.room[0] = 5;
    vi.advanceTimersByTime(RELAY_RETRY_MS);
    expect(q.taken.map((t) => t.tag)).toEqual([1, 4, 2, 3]);
    expect(r.waiting).toBe(0);
    expect(vi.getTimerCount()).toBe(0); // nothing left to retry: no timer
  });

  it('resumes a large message fragment by fragment where the full queue stopped it', () => {
    const q = new FakeQueues([2]);
    const r = new MessageRelay(q, 1);
    r.deliver(0, msg(9, 1, 100), new Uint8Array(100)); // 7 fragments of 16
    r.deliver(0, msg(10, 1), new Uint8Array(8));
    expect(q.taken.map((t) => t.bytes)).toEqual([16, 16]);
    q.room[0] = 100;
    vi.advanceTimersByTime(RELAY_RETRY_MS);
    expect(q.taken.map((t) => t.bytes)).toEqual([16, 16, 16, 16, 16, 16, 4, 8]);
    expect(q.taken.at(-1)!.tag).toBe(10);
  });

  it('lands a MSG payload in an array of its type, and refuses unknown types and partial elements', () => {
    const r = new MessageRelay(new FakeQueues([1]), 1);
    const f64 = r.landing(DTYPE_F64, 16);
    expect(f64).toBeInstanceOf(Float64Array);
    expect(f64.length).toBe(2);
    expect(() => r.landing(DTYPE_F64, 12)).toThrow(new ProtocolError('MSG of 12 bytes is not whole elements'));
    expect(() => r.landing(200, 8)).toThrow(/unknown type code 200/);
  });

  it('close() stops a pending retry', () => {
    const q = new FakeQueues([0]);
    const r = new MessageRelay(q, 1);
    r.deliver(0, msg(1, 0), new Uint8Array(8));
    expect(vi.getTimerCount()).toBe(1);
    r.close();
    expect(vi.getTimerCount()).toBe(0);
  });
});
