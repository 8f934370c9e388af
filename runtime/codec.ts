/**
 * Message payloads. Typed arrays travel as their raw bytes with a type code,
 * so they cost one memcpy each way and arrive as the same type; every other
 * value is msgpack (msgpackr, with typed arrays nested inside objects kept).
 */
import { Packr } from 'msgpackr';

export const DTYPE_MSGPACK = 0;

type TypedArrayCtor = { new (length: number): ArrayBufferView; BYTES_PER_ELEMENT: number; name: string };

/** Type codes 1.. in this order; Buffer and DataView get codes of their own. */
const CTORS: readonly TypedArrayCtor[] = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
] as unknown as TypedArrayCtor[];
export const DTYPE_BUFFER = CTORS.length + 1;
export const DTYPE_DATAVIEW = CTORS.length + 2;

const codeOfCtor = new Map<unknown, number>(CTORS.map((c, i) => [c, i + 1]));

const packr = new Packr({ useRecords: false, moreTypes: true, int64AsType: 'bigint', copyBuffers: true } as ConstructorParameters<typeof Packr>[0]);

export interface Encoded {
  dtype: number;
  bytes: Uint8Array;
}

/** Encodes a value. The bytes of a typed array alias it (no copy). */
export function encode(value: unknown): Encoded {
  if (ArrayBuffer.isView(value)) {
    const bytes = new Uint8Array(value.buffer as ArrayBuffer, value.byteOffset, value.byteLength);
    if (value instanceof DataView) return { dtype: DTYPE_DATAVIEW, bytes };
    if (Buffer.isBuffer(value)) return { dtype: DTYPE_BUFFER, bytes };
    const code = codeOfCtor.get(value.constructor);
    if (code !== undefined) return { dtype: code, bytes };
  }
  return { dtype: DTYPE_MSGPACK, bytes: packr.pack(value) };
}

/** Fresh memory to receive `byteLength` bytes of type `dtype`, and the value it will become. */
export function allocate(dtype: number, byteLength: number): { bytes: Uint8Array; finish: () => unknown } {
  if (dtype === DTYPE_MSGPACK) {
    const bytes = new Uint8Array(byteLength);
    return { bytes, finish: () => packr.unpack(bytes) };
  }
  if (dtype === DTYPE_BUFFER) {
    const b = Buffer.allocUnsafeSlow(byteLength);
    return { bytes: b, finish: () => b };
  }
  if (dtype === DTYPE_DATAVIEW) {
    const ab = new ArrayBuffer(byteLength);
    return { bytes: new Uint8Array(ab), finish: () => new DataView(ab) };
  }
  const Ctor = CTORS[dtype - 1];
  if (Ctor === undefined) throw new TypeError(`unknown payload type code ${dtype}`);
  const value = new Ctor(byteLength / Ctor.BYTES_PER_ELEMENT);
  return { bytes: new Uint8Array(value.buffer as ArrayBuffer, 0, byteLength), finish: () => value };
}

/** Decodes a copy of `bytes` (which may be ring memory about to be reused). */
export function decodeCopy(dtype: number, bytes: Uint8Array): unknown {
  if (dtype === DTYPE_MSGPACK) return packr.unpack(bytes);
  const out = allocate(dtype, bytes.byteLength);
  out.bytes.set(bytes);
  return out.finish();
}

/** A deep copy through the codec, as a send to oneself must deliver. */
export function cloneValue(value: unknown): unknown {
  const e = encode(value);
  return decodeCopy(e.dtype, e.bytes);
}

export function packValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function unpackValue(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}
