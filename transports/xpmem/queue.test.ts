import { describe, expect, it } from 'vitest';
import { ControlSegment } from './control.js';
import { NodeQueues, type RecordSink } from './queue.js';
import { decodeFrom, encode, allocate, finish } from '../../runtime/codec.js';
import type { TypedArray } from '../../runtime/types.js';

function pair(ringBytes = 4096) {
  const { segment } = ControlSegment.create(2, ringBytes, 2);
  return { segment, a: new NodeQueues(segment, 0), b: new NodeQueues(segment, 1) };
}

class Collect implements RecordSink {
  got: Array<{ source: number; tag: number; data: unknown; origin?: number }> = [];
  eager(source: number, origin: number, tag: number, dtype: number, view: TypedArray, off: number, len: number): void {
    this.got.push(origin >= 0 ? { source, tag, data: decodeFrom(dtype, view, off, len), origin } : { source, tag, data: decodeFrom(dtype, view, off, len) });
  }
  partial: { tag: number; dtype: number; dst: TypedArray; filled: number } | null = null;
  first(source: number, _origin: number, tag: number, dtype: number, total: number, view: TypedArray, off: number, len: number): void {
    this.partial = { tag, dtype, dst: allocate(dtype, total), filled: 0 };
    this.next(source, view, off, len);
  }
  next(source: number, view: TypedArray, off: number, len: number): void {
    const p = this.partial!;
    const bpe = view.BYTES_PER_ELEMENT;
    (p.dst as Float64Array).set((view as Float64Array).subarray(off / bpe, (off + len) / bpe), p.filled / bpe);
    p.filled += len;
    if (p.filled === p.dst.byteLength) {
      this.got.push({ source, tag: p.tag, data: finish(p.dtype, p.dst) });
      this.partial = null;
    }
  }
}

describe('shared-memory message rings', () => {
  it('delivers records in order across many wraps of the ring, with varied sizes', () => {
    const { a, b } = pair(4096);
    const sink = new Collect();
    let sent = 0;
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    const expected: number[][] = [];
    for (let round = 0; round < 2000; round++) {
      const n = rnd() % 200; // up to 800 bytes: many paddings at the ring's end
      const payload = Int32Array.from({ length: n }, (_, i) => sent * 1000 + i);
      const e = encode(payload);
      if (!a.trySendEager(1, sent, e.dtype, e.payload)) {
        // full: the consumer drains everything, then the send must fit
        while (b.poll(0, sink));
        expect(a.trySendEager(1, sent, e.dtype, e.payload)).toBe(true);
      }
      expected.push(Array.from(payload));
      sent++;
      if (rnd() % 3 === 0) b.poll(0, sink);
    }
    while (b.poll(0, sink));
    expect(sink.got.length).toBe(sent);
    sink.got.forEach((m, k) => {
      expect(m.tag).toBe(k);
      expect(m.source).toBe(0);
      expect(Array.from(m.data as Int32Array)).toEqual(expected[k]);
    });
  });

  it('says full instead of overwriting unread records', () => {
    const { a, b } = pair(4096);
    const msg = new Float64Array(100); // 816-byte records
    let n = 0;
    while (a.trySendEager(1, n, encode(msg).dtype, msg)) n++;
    expect(n).toBeGreaterThan(2);
    expect(n).toBeLessThan(6);
    expect(b.pending(0)).toBe(true);
    const sink = new Collect();
    expect(b.poll(0, sink)).toBe(true);
    expect(b.poll(0, sink)).toBe(true); // room for one more, and the padding at the ring's end
    expect(a.trySendEager(1, n, 9, msg)).toBe(true);
  });

  it('stale payload bytes of an earlier lap never pass for a record', () => {
    const { a, b } = pair(4096);
    const sink = new Collect();
    // Fill the ring with payloads full of small integers that look like sequence numbers.
    const bait = Int32Array.from({ length: 250 }, (_, i) => i + 1);
    for (let k = 0; k < 50; k++) {
      expect(a.trySendEager(1, k, encode(bait).dtype, bait)).toBe(true);
      expect(b.poll(0, sink)).toBe(true);
      expect(b.poll(0, sink)).toBe(false);
    }
    expect(sink.got.length).toBe(50);
  });

  it('streams large messages as fragments, interleaved with the consumer', () => {
    const { a, b } = pair(4096);
    const sink = new Collect();
    for (const T of [Float64Array, Int16Array, Uint8Array, BigInt64Array] as const) {
      const big = new T(10_001 - (10_001 % 8));
      for (let i = 0; i < big.length; i++) (big as Float64Array)[i] = (T === BigInt64Array ? BigInt(i) : i % 100) as number;
      const step = a.fragmentBytes;
      expect(step % 8).toBe(0);
      const dtype = encode(big).dtype;
      for (let off = 0; off < big.byteLength; off += step) {
        const len = Math.min(step, big.byteLength - off);
        while (!a.trySendFragment(1, 5, dtype, big, off, len)) expect(b.poll(0, sink)).toBe(true);
      }
      while (b.poll(0, sink));
      expect(sink.got.pop()!.data).toEqual(big);
    }
  });

  it('carries every payload type', () => {
    const { a, b } = pair(65536);
    const sink = new Collect();
    const values: unknown[] = [
      new Int8Array([-1, 2]), new Uint8Array([1, 2, 3]), new Uint8ClampedArray([255]), new Int16Array([-300]), new Uint16Array([60000]),
      new Int32Array([-5]), new Uint32Array([4e9]), new Float32Array([1.5]), new Float64Array([Math.PI]), new BigInt64Array([-2n]),
      new BigUint64Array([2n ** 63n]), Buffer.from('hi'), new DataView(new ArrayBuffer(3)), { a: [1, 'x'] }, 'text', 42, null, 2n ** 70n,
    ];
    for (const [k, v] of values.entries()) {
      const e = encode(v);
      expect(a.trySendEager(1, k, e.dtype, e.payload.slice())).toBe(true);
    }
    while (b.poll(0, sink));
    expect(sink.got.map((m) => m.data)).toEqual(values);
    expect(Buffer.isBuffer(sink.got[11]!.data)).toBe(true);
  });

  it('relays from the node agent (the gateway) with the origin rank of each record', () => {
    const { segment, b } = pair(4096);
    const gateway = new NodeQueues(segment, segment.gateway);
    const sink = new Collect();
    for (const origin of [5, 1_000_000, 0]) {
      const e = encode(Int32Array.of(origin));
      expect(gateway.trySendEager(1, 3, e.dtype, e.payload, origin)).toBe(true);
    }
    while (b.poll(segment.gateway, sink));
    expect(sink.got.map((m) => [m.source, m.origin, (m.data as Int32Array)[0]])).toEqual([
      [segment.gateway, 5, 5],
      [segment.gateway, 1_000_000, 1_000_000],
      [segment.gateway, 0, 0],
    ]);
  });
});
