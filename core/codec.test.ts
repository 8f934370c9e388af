import { describe, expect, it } from 'vitest';
import { copyPayload, decodeFrom, DTYPE_BUFFER, DTYPE_BYTES, DTYPE_CTORS, DTYPE_DATAVIEW, DTYPE_MSGPACK, dtypeOf, encode, finish, forMsgpack, moveCtor, packValue, unpackValue } from './codec.js';
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

describe('type codes', () => {
  it('name each typed array type, and Buffer, DataView and anything else apart', () => {
    for (const [i, Ctor] of DTYPE_CTORS.entries()) {
      const a = new Ctor(3);
      expect(dtypeOf(a)).toBe(i + 1);
      expect(encode(a)).toMatchObject({ dtype: i + 1, payload: a });
      expect(moveCtor(i + 1)).toBe(Ctor);
      expect(DTYPE_BYTES[i + 1]).toBe(Ctor.BYTES_PER_ELEMENT);
    }
    const b = Buffer.from([1, 2, 3]);
    expect(dtypeOf(b)).toBe(DTYPE_BUFFER);
    expect(finish(encode(b).dtype, encode(b).payload)).toBeInstanceOf(Buffer);
    expect(dtypeOf(new DataView(new ArrayBuffer(4)))).toBe(DTYPE_DATAVIEW);
    for (const v of [1, 'x', [1], { length: 1 }, new ArrayBuffer(8), null]) expect(dtypeOf(v)).toBe(DTYPE_MSGPACK);
    expect([DTYPE_BYTES[DTYPE_MSGPACK], DTYPE_BYTES[DTYPE_BUFFER], DTYPE_BYTES[DTYPE_DATAVIEW]]).toEqual([1, 1, 1]);
  });

  it('send a subclass of a typed array as its base type, with its elements', () => {
    class Samples extends Float32Array {}
    const s = Samples.of(1.5, 2.5);
    const e = encode(s);
    expect(e).toMatchObject({ dtype: dtypeOf(new Float32Array(0)), payload: s });
    // Its bytes move as the type code's type (the rings' views are of moveCtor(dtype)).
    const ring = new (moveCtor(e.dtype))(4);
    (ring as Float32Array).set(e.payload as Float32Array, 1);
    const out = decodeFrom(e.dtype, ring, 4, e.payload.byteLength);
    expect((out as object).constructor).toBe(Float32Array);
    expect([...(out as Float32Array)]).toEqual([1.5, 2.5]);
  });
});

describe('forMsgpack', () => {
  it('gives small typed arrays as a copy off V8s heap, subclasses as their base type, and the rest as they are', () => {
    const small = Float64Array.of(1.5, -2);
    const v = forMsgpack(small) as Float64Array;
    expect(v).not.toBe(small);
    expect(v.constructor).toBe(Float64Array);
    expect([...v]).toEqual([1.5, -2]);
    expect(unpackValue(packValue([{ k: 1 }, v]))).toEqual([{ k: 1 }, Float64Array.of(1.5, -2)]);
    const big = new Int32Array(100).fill(7);
    expect(forMsgpack(big)).toBe(big);
    class Counts extends Int32Array {}
    const sub = new Counts(100).fill(3);
    const base = forMsgpack(sub) as Int32Array;
    expect(base.constructor).toBe(Int32Array);
    expect(base.buffer).toBe(sub.buffer);
    expect(unpackValue(packValue(base))).toEqual(new Int32Array(100).fill(3));
    const tinySub = forMsgpack(Counts.of(4, 5)) as Int32Array;
    expect([tinySub.constructor, [...tinySub]]).toEqual([Int32Array, [4, 5]]);
    for (const other of [null, 'x', { a: 1 }, Buffer.from('hi'), new DataView(new ArrayBuffer(2))]) expect(forMsgpack(other)).toBe(other);
  });
});

describe('typed arrays inside msgpack values', () => {
  it('come back as msgpack made them, of every type and size, ArrayBuffers and DataViews too', () => {
    for (const Ctor of DTYPE_CTORS) {
      for (const n of [0, 1, 3, 64 / Ctor.BYTES_PER_ELEMENT, 64 / Ctor.BYTES_PER_ELEMENT + 1, 1000]) {
        const a = new Ctor(n);
        for (let i = 0; i < n; i++) (a as Float64Array)[i] = (typeof a[0] === 'bigint' ? BigInt(i + 1) : i + 1) as number;
        const back = unpackValue(packValue({ a, at: 'x' })) as { a: TypedArray };
        expect(back.a.constructor).toBe(Ctor);
        expect([...back.a]).toEqual([...a]);
        expect(back.a.buffer).not.toBe(a.buffer);
      }
    }
    const ab = Uint8Array.of(1, 2, 3).buffer;
    expect(new Uint8Array(unpackValue(packValue(ab)) as ArrayBuffer)).toEqual(Uint8Array.of(1, 2, 3));
    const dv = unpackValue(packValue(new DataView(Uint8Array.of(4, 5).buffer))) as DataView;
    expect([dv.constructor, dv.getUint8(1)]).toEqual([DataView, 5]);
  });
});

describe('copyPayload', () => {
  it('copies as the type code\'s own type, small or large, sharing nothing with the payload', () => {
    class Samples extends Float64Array {}
    for (const n of [0, 1, 8, 9, 1000]) {
      const src = Samples.from({ length: n }, (_, i) => i + 0.5);
      const dtype = dtypeOf(src);
      const copy = copyPayload(dtype, src);
      expect(copy.constructor).toBe(Float64Array);
      expect([...copy]).toEqual([...src]);
      if (n > 0) {
        src[0] = -1;
        expect(copy[0]).toBe(0.5);
      }
    }
  });
});
