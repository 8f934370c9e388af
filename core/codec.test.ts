import { describe, expect, it } from 'vitest';
import { decodeFrom, dtypeOf, encode } from './codec.js';
import type { TypedArray } from './types.js';

describe('decodeFrom', () => {
  // Below 4 KiB a copy is a slice; from 4 KiB up it skips the zeroing: both must copy exactly.
  const ctors = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array] as const;
  for (const Ctor of ctors) {
    it(`copies a ${Ctor.name} range of any size into memory of its own`, () => {
      for (const n of [0, 1, 7, 4096 / Ctor.BYTES_PER_ELEMENT - 1, 4096 / Ctor.BYTES_PER_ELEMENT, 70000]) {
        const src = new Ctor(n + 6) as TypedArray;
        for (let i = 0; i < src.length; i++) (src as Float64Array)[i] = (typeof src[0] === 'bigint' ? BigInt(i * 3 + 1) : i * 3 + 1) as number;
        const out = decodeFrom(dtypeOf(src), src, 3 * Ctor.BYTES_PER_ELEMENT, n * Ctor.BYTES_PER_ELEMENT) as TypedArray;
        expect(out).toBeInstanceOf(Ctor);
        expect(out.length).toBe(n);
        expect(out.byteOffset).toBe(0);
        expect(out.buffer.byteLength).toBe(n * Ctor.BYTES_PER_ELEMENT);
        expect([...out]).toEqual([...src.subarray(3, 3 + n)]);
        if (n > 0) {
          (src as Float64Array)[3] = (typeof src[0] === 'bigint' ? 99n : 99) as number; // the copy does not follow its source
          expect(out[0]).not.toBe(src[3]);
        }
      }
    });
  }

  it('decodes msgpack values', () => {
    const e = encode({ a: [1, 'two'] });
    expect(decodeFrom(e.dtype, e.payload, 0, e.payload.byteLength)).toEqual({ a: [1, 'two'] });
  });
});
