/**
 * Atomic operations on one element of shared memory, for every numeric typed
 * array type. Integer types use the hardware's atomics directly; floats run a
 * compare-exchange loop on their bits. So an agent serving a remote request
 * and a rank on the same node working on the same memory stay atomic with
 * respect to each other.
 */
import { DTYPE_CTORS } from '../../core/codec.js';
import { AMO } from './frames.js';

type Int = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;
export type AmoOp = (typeof AMO)[keyof typeof AMO];

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
    case AMO.FETCH_ADD: return Atomics.add(v as Int32Array, 0, x);
    case AMO.COMPARE_SWAP: return Atomics.compareExchange(v as Int32Array, 0, x, b as number);
    case AMO.SWAP: return Atomics.exchange(v as Int32Array, 0, x);
    case AMO.FETCH: return Atomics.load(v as Int32Array, 0);
    case AMO.SET: return Atomics.exchange(v as Int32Array, 0, x);
    default: throw new RangeError(`unknown atomic operation ${op}`);
  }
}

function floatAtomic(buffer: ArrayBuffer, bpe: number, byteOffset: number, op: number, a: number, b: number): number {
  const bits = bpe === 4 ? new Int32Array(buffer, byteOffset, 1) : new BigInt64Array(buffer, byteOffset, 1);
  const probe = bpe === 4 ? new Float32Array(1) : new Float64Array(1);
  const probeBits = bpe === 4 ? new Int32Array(probe.buffer) : new BigInt64Array(probe.buffer);
  if (op === AMO.FETCH) {
    probeBits[0] = Atomics.load(bits as Int32Array, 0);
    return probe[0]!;
  }
  for (;;) {
    const seen = Atomics.load(bits as Int32Array, 0);
    probeBits[0] = seen;
    const old = probe[0]!;
    let next: number;
    if (op === AMO.FETCH_ADD) next = old + a;
    else if (op === AMO.SWAP || op === AMO.SET) next = a;
    else if (op === AMO.COMPARE_SWAP) {
      if (old !== a) return old;
      next = b;
    } else throw new RangeError(`unknown atomic operation ${op}`);
    probe[0] = next;
    if (Atomics.compareExchange(bits as Int32Array, 0, seen, probeBits[0]! as number) === seen) return old;
  }
}

/** Operands and results travel as 8 bytes: bigints as int64, numbers as float64 (exact for every 32-bit integer). */
export function writeOperand(out: Buffer, at: number, v: number | bigint): void {
  if (typeof v === 'bigint') out.writeBigInt64LE(BigInt.asIntN(64, v), at);
  else out.writeDoubleLE(v, at);
}

export function readOperand(b: Uint8Array, at: number, big: boolean, unsigned: boolean): number | bigint {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (!big) return dv.getFloat64(at, true);
  return unsigned ? dv.getBigUint64(at, true) : dv.getBigInt64(at, true);
}
