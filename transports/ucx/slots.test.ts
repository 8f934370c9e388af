/**
 * The completion ring UCX's native code appends to and Slots.drain reads: its
 * counters are int32s that wrap after 2^31 completions (hours of gets), and the
 * slots completed across the wrap reach their owners, in order.
 */
import { describe, expect, it } from 'vitest';
import { Slots, type SlotOwner } from './slots.js';

const COUNT = 8;
// The layout Slots reads: status, 64-bit results, ring, then 16 control words (the ring's tail first).
const control = (): ArrayBuffer => new ArrayBuffer(COUNT * 16 + 64);

describe('UCX operation slots', () => {
  it('hands over the slots completed across the ring counters\' wrap at 2^31', () => {
    const buf = control();
    const tailWord = new Int32Array(buf, COUNT * 16, 1);
    const ring = new Int32Array(buf, COUNT * 12, COUNT);
    const status = new Int32Array(buf, 0, COUNT);
    tailWord[0] = 2 ** 31 - 2; // as native code left it after 2^31 - 2 completions
    const slots = new Slots(buf, COUNT);
    const seen: number[] = [];
    const owner: SlotOwner = { completed: (slot, s) => seen.push(slot * 10 + s) };
    const taken = [0, 1, 2, 3, 4].map(() => slots.take(owner));
    // What native Complete() does: the status, the slot at the tail's low bits, the tail + 1 (wrapping).
    for (const slot of taken) {
      const tail = tailWord[0]!;
      status[slot] = 0;
      ring[(tail >>> 0) % COUNT] = slot;
      tailWord[0] = (tail + 1) | 0;
    }
    expect(tailWord[0]).toBeLessThan(0);
    expect(slots.drain()).toBe(5);
    expect(seen).toEqual(taken.map((slot) => slot * 10));
    expect(slots.inFlight).toBe(0);
    expect(slots.drain()).toBe(0);
  });

  it('refuses a slot count that is not a power of two', () => {
    expect(() => new Slots(new ArrayBuffer(12 * 16 + 64), 12)).toThrow(/power of two/);
  });
});
