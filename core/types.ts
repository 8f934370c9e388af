/** Typed-array types the runtime moves as raw memory. */
export type TypedArray =
  | Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

export interface TypedArrayConstructor<T extends TypedArray> {
  new (length: number): T;
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
}

/** Arrays that remote atomics work on. */
export type AtomicArray = Int32Array | BigInt64Array;
/** The element type of an atomic array: number for Int32Array, bigint for BigInt64Array. */
export type AtomicValue<A extends AtomicArray> = A extends BigInt64Array ? bigint : number;

export type Comparison = '==' | '!=' | '<' | '<=' | '>' | '>=';

const TYPED_ARRAY_CTORS: ReadonlySet<unknown> = new Set([
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
]);

export function isTypedArrayCtor(c: unknown): c is TypedArrayConstructor<TypedArray> {
  return TYPED_ARRAY_CTORS.has(c);
}

/** The standard typed-array constructor `c` is or derives from (Buffer's: Uint8Array); `c` itself when none. */
export function baseTypedArrayCtor(c: unknown): unknown {
  for (let p = c; typeof p === 'function'; p = Object.getPrototypeOf(p) as unknown) if (TYPED_ARRAY_CTORS.has(p)) return p;
  return c;
}

export function isTypedArray(v: unknown): v is TypedArray {
  return ArrayBuffer.isView(v) && !(v instanceof DataView);
}
