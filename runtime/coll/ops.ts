/**
 * Reduction operators over typed arrays. Each (array type, operator) pair
 * gets its own generated kernel, so that every kernel's element accesses stay
 * monomorphic in V8 (one shared function over all types would not).
 * Integer arithmetic wraps as in C (Math.imul for 32-bit products).
 */
import type { TypedArray } from '../types.js';

export const REDUCE_OPS = ['sum', 'prod', 'min', 'max', 'band', 'bor', 'bxor', 'land', 'lor'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];

/** dst[i] = dst[i] <op> src[i] for i in [lo, hi). */
export type Kernel = (dst: TypedArray, src: TypedArray, lo: number, hi: number) => void;

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
  if ((op === 'band' || op === 'bor' || op === 'bxor') && FLOAT_TYPES.has(Ctor)) {
    throw new TypeError(`'${op}' is a bitwise reduction; ${(Ctor as { name: string }).name} is not an integer type`);
  }
  return op as ReduceOp;
}

function body(op: ReduceOp, big: boolean, imul: boolean): string {
  const zero = big ? '0n' : '0';
  const one = big ? '1n' : '1';
  switch (op) {
    case 'sum': return 'd[i] += s[i];';
    case 'prod': return imul ? 'd[i] = Math.imul(d[i], s[i]);' : 'd[i] *= s[i];';
    case 'min': return 'if (s[i] < d[i]) d[i] = s[i];';
    case 'max': return 'if (s[i] > d[i]) d[i] = s[i];';
    case 'band': return 'd[i] &= s[i];';
    case 'bor': return 'd[i] |= s[i];';
    case 'bxor': return 'd[i] ^= s[i];';
    case 'land': return `d[i] = (d[i] !== ${zero} && s[i] !== ${zero}) ? ${one} : ${zero};`;
    case 'lor': return `d[i] = (d[i] !== ${zero} || s[i] !== ${zero}) ? ${one} : ${zero};`;
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
    k = new Function('d', 's', 'lo', 'hi', `for (let i = lo; i < hi; i++) { ${body(op, big, imul)} }`) as Kernel;
    byOp.set(op, k);
  }
  return k;
}

/** Applies `op` to two scalars (numbers or bigints), for tests and scalar paths. */
export function combineScalars(op: ReduceOp, a: number, b: number): number;
export function combineScalars(op: ReduceOp, a: bigint, b: bigint): bigint;
export function combineScalars(op: ReduceOp, a: number | bigint, b: number | bigint): number | bigint {
  const d = typeof a === 'bigint' ? BigInt64Array.of(a) : Float64Array.of(a as number);
  const s = typeof b === 'bigint' ? BigInt64Array.of(b) : Float64Array.of(b as number);
  kernel(d.constructor, op)(d, s, 0, 1);
  return d[0]!;
}
