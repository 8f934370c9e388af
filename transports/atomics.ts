/**
 * Atomic operations on one element of shared memory, for every numeric typed
 * array type: what an endpoint does on memory it maps (this rank's, a node
 * peer's) and what a node agent does serving a remote request. Integer types
 * use the hardware's atomics directly; floats run a compare-exchange loop on
 * their bits. So an agent serving a remote request and a rank on the same
 * node working on the same memory stay atomic with respect to each other.
 */
import { DTYPE_CTORS } from '../core/codec.js';
import { AtomicOp } from './endpoint.js';

type Int = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

const BIG = new Set<unknown>([BigInt64Array, BigUint64Array]);

/** Whether elements of the type with this dtype are bigints. */
export function isBigDtype(dtype: number): boolean {
  return BIG.has(DTYPE_CTORS[dtype - 1]);
}

/**
 * Applies `op` to the element at `byteOffset` (aligned to its size) of
 * `buffer`, as an element of the type with `dtype`; returns its old value.
 * `a` is the operand (the expected value for COMPARE_SWAP), `b` the desired one.
 */
export function applyAtomic(buffer: ArrayBuffer, dtype: number, byteOffset: number, op: number, a: number | bigint, b: number | bigint): number | bigint {
  const Ctor = DTYPE_CTORS[dtype - 1];
  if (Ctor === undefined || Ctor === Uint8ClampedArray) throw new TypeError(`no atomics on type code ${dtype}`);
  const bpe = Ctor.BYTES_PER_ELEMENT;
  if (byteOffset % bpe !== 0) throw new RangeError(`atomic at byte ${byteOffset} is not aligned to ${bpe}`);
  if (Ctor === Float32Array || Ctor === Float64Array) return floatAtomic(buffer, bpe, byteOffset, op, a as number, b as number);
  const v = new (Ctor as unknown as { new (b: ArrayBuffer, o: number, n: number): Int })(buffer, byteOffset, 1);
  const x = a as number;
  switch (op) {
    case AtomicOp.FETCH_ADD: return Atomics.add(v as Int32Array, 0, x);
    case AtomicOp.COMPARE_SWAP: return Atomics.compareExchange(v as Int32Array, 0, x, b as number);
    case AtomicOp.SWAP: return Atomics.exchange(v as Int32Array, 0, x);
    case AtomicOp.FETCH: return Atomics.load(v as Int32Array, 0);
    case AtomicOp.SET: return Atomics.exchange(v as Int32Array, 0, x);
    default: throw new RangeError(`unknown atomic operation ${op}`);
  }
}

function floatAtomic(buffer: ArrayBuffer, bpe: number, byteOffset: number, op: number, a: number, b: number): number {
  const bits = bpe === 4 ? new Int32Array(buffer, byteOffset, 1) : new BigInt64Array(buffer, byteOffset, 1);
  const probe = bpe === 4 ? new Float32Array(1) : new Float64Array(1);
  const probeBits = bpe === 4 ? new Int32Array(probe.buffer) : new BigInt64Array(probe.buffer);
  if (op === AtomicOp.FETCH) {
    probeBits[0] = Atomics.load(bits as Int32Array, 0);
    return probe[0]!;
  }
  for (;;) {
    const seen = Atomics.load(bits as Int32Array, 0);
    probeBits[0] = seen;
    const old = probe[0]!;
    let next: number;
    if (op === AtomicOp.FETCH_ADD) next = old + a;
    else if (op === AtomicOp.SWAP || op === AtomicOp.SET) next = a;
    else if (op === AtomicOp.COMPARE_SWAP) {
      if (old !== a) return old;
      next = b;
    } else throw new RangeError(`unknown atomic operation ${op}`);
    probe[0] = next;
    if (Atomics.compareExchange(bits as Int32Array, 0, seen, probeBits[0]! as number) === seen) return old;
  }
}

/**
 * The hot path of an atomic on memory this rank maps: element `i` of a view
 * over the whole heap (Int32Array or BigInt64Array, the types the World's
 * atomics take), no allocation. `a` and `b` as applyAtomic.
 */
export function atomicAt(v: Int32Array | BigInt64Array, i: number, op: number, a: number | bigint, b: number | bigint): number | bigint {
  const w = v as Int32Array;
  const x = a as number;
  switch (op) {
    case AtomicOp.FETCH_ADD: return Atomics.add(w, i, x);
    case AtomicOp.COMPARE_SWAP: return Atomics.compareExchange(w, i, x, b as number);
    case AtomicOp.SWAP: return Atomics.exchange(w, i, x);
    case AtomicOp.FETCH: return Atomics.load(w, i);
    case AtomicOp.SET: return Atomics.exchange(w, i, x);
    default: throw new RangeError(`unknown atomic operation ${op}`);
  }
}
