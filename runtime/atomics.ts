/**
 * One-sided atomics on `pe`'s copy of a symmetric Int32Array or
 * BigInt64Array (OpenSHMEM's shmem_atomic_*): checked here, before anything
 * moves, then done by `pe`'s endpoint (a hardware atomic on mapped memory, or
 * the peer's node agent or network serving it).
 */
import type { AtomicArray, AtomicValue, Comparison } from '../core/types.js';
import { AtomicOp, type AtomicOpCode } from '../transports/endpoint.js';

/** What the atomics need of the World: one checked atomic on `pe`'s element. */
export interface AtomicTarget {
  atomic(op: AtomicOpCode, arr: AtomicArray, index: number, pe: number, a: number | bigint, b: number | bigint, what: string): Promise<number | bigint> | number | bigint;
}

export class RemoteAtomics {
  readonly #world: AtomicTarget;
  constructor(world: AtomicTarget) {
    this.#world = world;
  }

  async fetchAdd<A extends AtomicArray>(arr: A, index: number, value: AtomicValue<A>, pe: number): Promise<AtomicValue<A>> {
    return (await this.#world.atomic(AtomicOp.FETCH_ADD, arr, index, pe, value, value, 'fetchAdd')) as AtomicValue<A>;
  }

  async add<A extends AtomicArray>(arr: A, index: number, value: AtomicValue<A>, pe: number): Promise<void> {
    await this.#world.atomic(AtomicOp.FETCH_ADD, arr, index, pe, value, value, 'add');
  }

  /** Sets the element to `desired` if it holds `expected`; the old value either way. */
  async compareSwap<A extends AtomicArray>(arr: A, index: number, expected: AtomicValue<A>, desired: AtomicValue<A>, pe: number): Promise<AtomicValue<A>> {
    return (await this.#world.atomic(AtomicOp.COMPARE_SWAP, arr, index, pe, expected, desired, 'compareSwap')) as AtomicValue<A>;
  }

  async swap<A extends AtomicArray>(arr: A, index: number, value: AtomicValue<A>, pe: number): Promise<AtomicValue<A>> {
    return (await this.#world.atomic(AtomicOp.SWAP, arr, index, pe, value, value, 'swap')) as AtomicValue<A>;
  }

  async fetch<A extends AtomicArray>(arr: A, index: number, pe: number): Promise<AtomicValue<A>> {
    const zero = arr instanceof BigInt64Array ? 0n : 0;
    return (await this.#world.atomic(AtomicOp.FETCH, arr, index, pe, zero, zero, 'fetch')) as AtomicValue<A>;
  }

  async set<A extends AtomicArray>(arr: A, index: number, value: AtomicValue<A>, pe: number): Promise<void> {
    await this.#world.atomic(AtomicOp.SET, arr, index, pe, value, value, 'set');
  }
}

/** Throws TypeError unless `value` suits `arr`'s elements (a bigint for BigInt64Array, an integer for Int32Array). */
export function checkAtomicValue(arr: AtomicArray, value: unknown, what: string): void {
  if (arr instanceof BigInt64Array) {
    if (typeof value !== 'bigint') throw new TypeError(`${what}: a BigInt64Array takes bigint values, not ${typeof value}`);
  } else if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${what}: an Int32Array takes integer numbers, not ${String(value)}`);
  }
}

/** The test waitUntil makes of an element against its value. */
export function comparator(cmp: Comparison): (a: number, b: number) => boolean {
  switch (cmp) {
    case '==': return (a, b) => a === b;
    case '!=': return (a, b) => a !== b;
    case '<': return (a, b) => a < b;
    case '<=': return (a, b) => a <= b;
    case '>': return (a, b) => a > b;
    case '>=': return (a, b) => a >= b;
    default: throw new TypeError(`comparison must be one of == != < <= > >=, not ${String(cmp)}`);
  }
}
