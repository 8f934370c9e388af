/**
 * Reduction operators over typed arrays. Each (array type, operator) pair
 * gets its own generated kernel, so that every kernel's element accesses stay
 * monomorphic in V8 (one shared function over all types would not).
 * Integer arithmetic wraps as in C (Math.imul for 32-bit products).
 */
import { native } from '../../native/index.js';
import { baseTypedArrayCtor, isTypedArray, type TypedArray } from '../../core/types.js';

export const REDUCE_OPS = ['sum', 'prod', 'min', 'max', 'band', 'bor', 'bxor', 'land', 'lor'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];

/** dst[dOff + i] = dst[dOff + i] <op> src[sOff + i] for i < n. */
export type Kernel = (dst: TypedArray, dOff: number, src: TypedArray, sOff: number, n: number) => void;

/** From this many elements on, the native kernel (vectorized C++) beats the JS one despite its call. */
const NATIVE_FROM = 256;

const FLOAT_TYPES = new Set<unknown>([Float32Array, Float64Array]);
const BIGINT_TYPES = new Set<unknown>([BigInt64Array, BigUint64Array]);

export function opCode(op: string): number {
  const i = (REDUCE_OPS as readonly string[]).indexOf(op);
  if (i < 0) throw new TypeError(`unknown reduction '${op}'; one of ${REDUCE_OPS.join(', ')}`);
  return i + 1;
}

/** Throws TypeError when `op` makes no sense on `Ctor` (bitwise operators on floats). */
export function checkOp(op: string, Ctor: unknown): ReduceOp {
  opCode(op);
  if (isBitwise(op) && FLOAT_TYPES.has(Ctor)) {
    throw new TypeError(`'${op}' is a bitwise reduction; ${(Ctor as { name: string }).name} is not an integer type`);
  }
  return op as ReduceOp;
}

/**
 * The check of a reduction's array type and operator, kept for a loop that
 * repeats them. A subclass (a Buffer too) reduces as its base type: its
 * kernels, its checks, the native code's type code (a Buffer's failed there,
 * after its round was taken, and broke the team).
 */
export class ReductionCheck {
  #ctor: unknown = null;
  #op = '';
  #base: unknown = null;

  /** Throws when `op` makes no sense on `arr`'s type; returns its base typed-array constructor. */
  of(arr: TypedArray, op: ReduceOp): unknown {
    // Read once: a typed array's constructor is a load V8 does not inline (core/codec.ts, typedCode).
    const Ctor = arr.constructor;
    if (Ctor !== this.#ctor || op !== this.#op) {
      const base = baseTypedArrayCtor(Ctor);
      checkOp(op, base);
      this.#base = base;
      this.#ctor = Ctor;
      this.#op = op;
    }
    return this.#base;
  }
}

/** A number or bigint a reduction takes and returns in place of a typed array. */
export type Scalar = number | bigint;

function isBitwise(op: string): boolean {
  return op === 'band' || op === 'bor' || op === 'bxor';
}

/**
 * The typed array a reduction of `buf` works on: `buf` itself, or a
 * one-element array for a number (Float64Array; BigInt64Array for the bitwise
 * operators, which work on its integer value) or a bigint. Throws TypeError
 * for anything else.
 */
export function reductionArray(buf: TypedArray | Scalar, op: string): TypedArray {
  if (isTypedArray(buf)) return buf;
  if (typeof buf === 'bigint') {
    // A BigInt64Array of one: a bigint beyond 64 bits was cut to its low ones, silently.
    if (buf !== BigInt.asIntN(64, buf)) throw new RangeError(`a bigint reduces as a signed 64-bit integer; ${buf} is out of its range`);
    return BigInt64Array.of(buf);
  }
  if (typeof buf === 'number') {
    if (!isBitwise(op)) return Float64Array.of(buf);
    if (!Number.isSafeInteger(buf)) throw new TypeError(`'${op}' needs an integer, not ${buf}`);
    return BigInt64Array.of(BigInt(buf));
  }
  throw new TypeError(`reductions take a typed array, a number or a bigint, not ${typeof buf}`);
}

const firstElement = (a: TypedArray): Scalar => a[0]!;
const firstAsNumber = (a: TypedArray): Scalar => Number(a[0]!);

/** How the result of a reduction of `buf` is read from its reductionArray: null for a typed array (the array itself). */
export function scalarOf(buf: TypedArray | Scalar, op: string): ((a: TypedArray) => Scalar) | null {
  if (typeof buf === 'bigint') return firstElement;
  if (typeof buf === 'number') return isBitwise(op) ? firstAsNumber : firstElement;
  return null;
}

function body(op: ReduceOp, big: boolean, imul: boolean, float: boolean): string {
  const zero = big ? '0n' : '0';
  const one = big ? '1n' : '1';
  switch (op) {
    case 'sum': return 'd[a] += s[b];';
    case 'prod': return imul ? 'd[a] = Math.imul(d[a], s[b]);' : 'd[a] *= s[b];';
    // A NaN wins, as native/reduce.cc's: so the fold is associative, and the result the same
    // whatever the grouping (across nodes) or the member that holds the NaN.
    case 'min': return float ? 'if (s[b] < d[a] || s[b] !== s[b]) d[a] = s[b];' : 'if (s[b] < d[a]) d[a] = s[b];';
    case 'max': return float ? 'if (s[b] > d[a] || s[b] !== s[b]) d[a] = s[b];' : 'if (s[b] > d[a]) d[a] = s[b];';
    case 'band': return 'd[a] &= s[b];';
    case 'bor': return 'd[a] |= s[b];';
    case 'bxor': return 'd[a] ^= s[b];';
    case 'land': return `d[a] = (d[a] !== ${zero} && s[b] !== ${zero}) ? ${one} : ${zero};`;
    case 'lor': return `d[a] = (d[a] !== ${zero} || s[b] !== ${zero}) ? ${one} : ${zero};`;
  }
}

const kernels = new Map<unknown, Map<ReduceOp, Kernel>>();

export function kernel(Ctor: unknown, op: ReduceOp): Kernel {
  let byOp = kernels.get(Ctor);
  if (byOp === undefined) kernels.set(Ctor, (byOp = new Map()));
  let k = byOp.get(op);
  if (k === undefined) {
    const big = BIGINT_TYPES.has(Ctor);
    const imul = Ctor === Int32Array || Ctor === Uint32Array;
    // A new Function per pair: its own feedback, so its accesses stay monomorphic.
    const js = new Function('d', 'dOff', 's', 'sOff', 'n', `for (let i = 0; i < n; i++) { const a = dOff + i, b = sOff + i; ${body(op, big, imul, FLOAT_TYPES.has(Ctor))} }`) as Kernel;
    const code = opCode(op);
    const reduce = native().reduce;
    k = (d, dOff, src, sOff, n) => (n < NATIVE_FROM ? js(d, dOff, src, sOff, n) : reduce(d, dOff, src, sOff, n, code));
    byOp.set(op, k);
  }
  return k;
}
