/** A small assertion helper for apps run by integration tests: failures exit non-zero with a message. */
import { isDeepStrictEqual } from 'node:util';

export function check(cond: unknown, what: string): void {
  if (!cond) throw new Error(`check failed: ${what}`);
}

export function equal(actual: unknown, expected: unknown, what: string): void {
  if (!isDeepStrictEqual(actual, expected)) {
    const show = (v: unknown): string => {
      try {
        return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : ArrayBuffer.isView(x) ? `${x.constructor.name}[${Array.from(x as unknown as ArrayLike<unknown>).slice(0, 8).join(',')}]` : x));
      } catch {
        return String(v);
      }
    };
    throw new Error(`check failed: ${what}: got ${show(actual)}, expected ${show(expected)}`);
  }
}

export function throws(fn: () => unknown, type: new (...a: never[]) => Error, what: string): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof type) return;
    throw new Error(`check failed: ${what}: threw ${(e as Error).name}: ${(e as Error).message}, expected ${type.name}`);
  }
  throw new Error(`check failed: ${what}: did not throw`);
}

export async function rejects(p: () => Promise<unknown>, type: new (...a: never[]) => Error, what: string): Promise<void> {
  try {
    await p();
  } catch (e) {
    if (e instanceof type) return;
    throw new Error(`check failed: ${what}: rejected with ${(e as Error).name}: ${(e as Error).message}, expected ${type.name}`);
  }
  throw new Error(`check failed: ${what}: did not reject`);
}
