/**
 * Message payloads. Typed arrays travel as their raw bytes with a type code,
 * so they cost one memcpy each way and arrive as the same type; every other
 * value is msgpack (msgpackr, keeping typed arrays nested inside objects).
 *
 * The hot path allocates nothing on send and one array on receive: payloads
 * are written and read through views of the destination's own element type
 * (TypedArray.set / TypedArray.slice are memcpy when the types match), never
 * through temporary byte views.
 */
// Imported, not the global: Node 20's global Buffer is a getter, 9 ns a read in optimized code (measured).
import { Buffer } from 'node:buffer';
import { addExtension, Packr } from 'msgpackr';
import type { TypedArray, TypedArrayConstructor } from './types.js';

export const DTYPE_MSGPACK = 0;

type ViewCtor = { new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TypedArray; new (length: number): TypedArray; BYTES_PER_ELEMENT: number };

/** Type codes 1.. in this order. Buffers travel as Uint8Array and are rewrapped. */
export const DTYPE_CTORS: readonly ViewCtor[] = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
] as unknown as ViewCtor[];
export const DTYPE_BUFFER = DTYPE_CTORS.length + 1;
export const DTYPE_DATAVIEW = DTYPE_CTORS.length + 2;
const DTYPE_UINT8 = 2;

/**
 * V8 keeps the data of typed arrays up to this size in its heap
 * (typed_array_max_size_in_heap): a `.buffer` of one, or its hand-over to
 * native code, gives it a backing store of its own (a malloc, and a free by
 * V8's sweeper), so small payloads pass through memory outside the heap.
 */
export const ON_HEAP_BYTES = 64;

/** Bytes per element of each type code's moved type (msgpack, Buffer and DataView move as bytes). */
export const DTYPE_BYTES: readonly number[] = [1, ...DTYPE_CTORS.map((c) => c.BYTES_PER_ELEMENT), 1, 1];

/**
 * The type code of a typed array (0 for anything else, and for a Buffer, which
 * travels as DTYPE_BUFFER). By `instanceof`, not `value.constructor` and a
 * Map: V8 (Node 20) does not inline a typed array's `constructor`,
 * `byteLength` or `BYTES_PER_ELEMENT` (about 5 ns a load, measured) but
 * compiles `instanceof` a builtin to a few map checks (2 ns for the whole
 * chain); this runs on every send and receive. A subclass of a typed array
 * travels as its base type, as structuredClone would give it.
 */
function typedCode(value: object): number {
  if (value instanceof Uint8Array) return value instanceof Buffer ? 0 : 2;
  if (value instanceof Float64Array) return 9;
  if (value instanceof Int32Array) return 6;
  if (value instanceof Float32Array) return 8;
  if (value instanceof Uint32Array) return 7;
  if (value instanceof BigInt64Array) return 10;
  if (value instanceof Int8Array) return 1;
  if (value instanceof Int16Array) return 4;
  if (value instanceof Uint16Array) return 5;
  if (value instanceof Uint8ClampedArray) return 3;
  if (value instanceof BigUint64Array) return 11;
  return 0;
}

const packr = new Packr({ useRecords: false, moreTypes: true, int64AsType: 'bigint', copyBuffers: true } as ConstructorParameters<typeof Packr>[0]);

/** The type code of a value as it would be sent (DTYPE_MSGPACK for anything not a typed array). */
export function dtypeOf(value: unknown): number {
  if (!ArrayBuffer.isView(value)) return DTYPE_MSGPACK;
  const code = typedCode(value);
  if (code !== 0) return code;
  return Buffer.isBuffer(value) ? DTYPE_BUFFER : value instanceof DataView ? DTYPE_DATAVIEW : DTYPE_MSGPACK;
}

/** Where forMsgpack() puts small typed arrays: memory of its own, outside V8's heap, reused. */
const PACK_SCRATCH = new ArrayBuffer(ON_HEAP_BYTES);

/**
 * `value` as msgpack should pack it, for a value about to be packed at once
 * (valid until the next call). A typed array goes as its base type (msgpack
 * cannot name a subclass: its unpacker fails on it, and a subclass travels as
 * its base type everywhere else); a small one (ON_HEAP_BYTES) as a copy in
 * scratch memory, since msgpack takes its `.buffer` (10% of a rank in a loop
 * of small collectives across nodes went to those backing stores, measured).
 */
export function forMsgpack(value: unknown): unknown {
  if (!ArrayBuffer.isView(value)) return value;
  const code = typedCode(value);
  if (code === 0) return value;
  const Ctor = DTYPE_CTORS[code - 1]!;
  const n = (value as TypedArray).length;
  if (n * DTYPE_BYTES[code]! <= ON_HEAP_BYTES) {
    const v = new Ctor(PACK_SCRATCH, 0, n);
    (v as Float64Array).set(value as Float64Array);
    return v;
  }
  return value.constructor === Ctor ? value : new Ctor(value.buffer as ArrayBuffer, value.byteOffset, n);
}

/** Where unpackTypedArray() copies small typed arrays through: aligned, outside V8's heap, reused. */
const UNPACK_SCRATCH = new ArrayBuffer(ON_HEAP_BYTES);
const UNPACK_BYTES = new Uint8Array(UNPACK_SCRATCH);

/**
 * msgpackr's decoder of its typed-array extension (0x74: a type code byte, then
 * the bytes), the same values, but a small array (ON_HEAP_BYTES) no longer gets
 * a backing store of its own: msgpackr takes `.buffer` of a fresh slice, one
 * per typed value of every collective message across nodes. Codes
 * 0-10 are DTYPE_CTORS in order, 16 an ArrayBuffer, 17 a DataView.
 */
function unpackTypedArray(data: Uint8Array): unknown {
  const code = data[0]!;
  const Ctor = code < DTYPE_CTORS.length ? DTYPE_CTORS[code]! : null;
  const bytes = data.length - 1;
  if (Ctor !== null && bytes <= ON_HEAP_BYTES && bytes % Ctor.BYTES_PER_ELEMENT === 0) {
    UNPACK_BYTES.set(data.subarray(1));
    return new Ctor(UNPACK_SCRATCH, 0, bytes / Ctor.BYTES_PER_ELEMENT).slice();
  }
  // As msgpackr: a copy, for alignment, then the value over its buffer.
  const buffer = Uint8Array.prototype.slice.call(data, 1).buffer as ArrayBuffer;
  if (Ctor !== null) return new Ctor(buffer);
  if (code === 16) return buffer;
  if (code === 17) return new DataView(buffer);
  throw new Error(`Could not find typed array for code ${code}`);
}
addExtension({ type: 0x74, unpack: unpackTypedArray } as unknown as Parameters<typeof addExtension>[0]);

/** The element type a payload of `dtype` is moved as. */
export function moveCtor(dtype: number): ViewCtor {
  return DTYPE_CTORS[(dtype === DTYPE_MSGPACK || dtype === DTYPE_BUFFER || dtype === DTYPE_DATAVIEW ? DTYPE_UINT8 : dtype) - 1]!;
}

export interface Encoded {
  dtype: number;
  /** What to copy: the value itself for typed arrays (no copy made here). */
  payload: TypedArray;
}

const scratch: Encoded = { dtype: 0, payload: new Uint8Array(0) };

/**
 * Encodes a value. Returns a shared object, valid until the next call: the
 * caller copies the payload (or holds it) before encoding again.
 */
export function encode(value: unknown): Encoded {
  if (ArrayBuffer.isView(value)) {
    const code = typedCode(value);
    if (code !== 0) {
      scratch.dtype = code;
      scratch.payload = value as TypedArray;
      return scratch;
    }
    if (Buffer.isBuffer(value)) {
      scratch.dtype = DTYPE_BUFFER;
      scratch.payload = value;
      return scratch;
    }
    if (value instanceof DataView) {
      scratch.dtype = DTYPE_DATAVIEW;
      scratch.payload = new Uint8Array(value.buffer as ArrayBuffer, value.byteOffset, value.byteLength);
      return scratch;
    }
  }
  scratch.dtype = DTYPE_MSGPACK;
  scratch.payload = packr.pack(value);
  return scratch;
}

/** Turns received memory (owned by the caller, not shared) into the value sent. */
export function finish(dtype: number, moved: TypedArray): unknown {
  if (dtype === DTYPE_MSGPACK) return packr.unpack(moved as Uint8Array);
  if (dtype === DTYPE_BUFFER) return Buffer.from(moved.buffer as ArrayBuffer, moved.byteOffset, moved.byteLength);
  if (dtype === DTYPE_DATAVIEW) return new DataView(moved.buffer as ArrayBuffer, moved.byteOffset, moved.byteLength);
  return moved;
}

/** Copies `byteLength` bytes at `byteOffset` of `view`'s memory out as the value sent. */
export function decodeFrom(dtype: number, view: TypedArray, byteOffset: number, byteLength: number): unknown {
  const bpe = view.BYTES_PER_ELEMENT;
  const start = byteOffset / bpe;
  // msgpack can be decoded in place: it copies what it keeps (copyBuffers).
  if (dtype === DTYPE_MSGPACK) return packr.unpack((view as Uint8Array).subarray(start, start + byteLength));
  return finish(dtype, copyOf(view, start, start + byteLength / bpe));
}

/** From here up a copy skips V8's zeroing of the new memory (measured: 7% of a receiving rank's CPU at 64 KiB). */
const UNZEROED_FROM = 4096;

/** Elements [start, end) of `view` in memory of their own. */
function copyOf(view: TypedArray, start: number, end: number): TypedArray {
  const bytes = (end - start) * view.BYTES_PER_ELEMENT;
  if (bytes < UNZEROED_FROM) return view.slice(start, end);
  const Ctor = view.constructor as TypedArrayConstructor<TypedArray>;
  // allocUnsafeSlow: an ArrayBuffer of exactly `bytes`, not zeroed (every byte is written next).
  const out = new Ctor(Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer, 0, end - start);
  (out as Float64Array).set((view as Float64Array).subarray(start, end));
  return out;
}

/**
 * A copy of a payload of `dtype` in memory of its own, as the type code's own
 * type: `slice()` would make it through a subclass's constructor (Symbol.species),
 * which may not take a length. A small one (ON_HEAP_BYTES) is made in Node's
 * buffer pool, outside V8's heap, for native code to take as it is, and is
 * filled by set() of the same type, with no `.buffer` of the payload.
 */
export function copyPayload(dtype: number, payload: TypedArray): TypedArray {
  const Ctor = moveCtor(dtype);
  const n = payload.length;
  if (n * DTYPE_BYTES[dtype]! > ON_HEAP_BYTES) return new (Ctor as unknown as new (from: TypedArray) => TypedArray)(payload);
  // The pool's slices start on 8-byte boundaries: a view of any element type fits.
  const pool = Buffer.allocUnsafe(n * DTYPE_BYTES[dtype]!);
  const copy = new Ctor(pool.buffer as ArrayBuffer, pool.byteOffset, n);
  (copy as Float64Array).set(payload as Float64Array);
  return copy;
}

/** Fresh memory for a payload of `byteLength` bytes of `dtype`. */
export function allocate(dtype: number, byteLength: number): TypedArray {
  const Ctor = moveCtor(dtype);
  return new Ctor(byteLength / Ctor.BYTES_PER_ELEMENT);
}

/** A deep copy through the codec, as a send to oneself must deliver. */
export function cloneValue(value: unknown): unknown {
  const e = encode(value);
  if (e.dtype === DTYPE_MSGPACK) return packr.unpack(e.payload as Uint8Array);
  return finish(e.dtype, e.payload.slice());
}

export function packValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function unpackValue(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}
