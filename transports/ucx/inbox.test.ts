/**
 * The inbox hands every batch and rendezvous buffer back to the native side
 * once its messages are delivered (the memory is reused), and only then; a
 * rendezvous still arriving holds back what follows it.
 */
import { describe, expect, it } from 'vitest';
import type { NativeUcx } from '../../native/index.js';
import type { TypedArray } from '../../core/types.js';
import { Inbox } from './inbox.js';

/** A batch as native/ucx-lib.cc writes it: 24-byte headers, payloads padded to 8. */
function batch(records: Array<{ source: number; tag: number; payload?: Uint8Array; large?: number; length?: number }>): ArrayBuffer {
  const size = records.reduce((n, r) => n + 24 + (r.large ? 0 : ((r.payload!.length + 7) & ~7)), 0);
  const b = new ArrayBuffer(size);
  const w = new Uint32Array(b);
  let at = 0;
  for (const r of records) {
    const length = r.large ? r.length! : r.payload!.length;
    w.set([length, r.source, r.tag, 1, r.large ?? 0, 0], at / 4);
    at += 24;
    if (!r.large) {
      new Uint8Array(b, at, length).set(r.payload!);
      at += (length + 7) & ~7;
    }
  }
  return b;
}

function fakeUcx(batches: ArrayBuffer[], larges: Map<number, ArrayBuffer | null>, events: string[]): NativeUcx {
  const names = new Map<ArrayBuffer, string>();
  batches.forEach((b, i) => names.set(b, `batch${i}`));
  for (const [id, b] of larges) if (b !== null) names.set(b, `large${id}`);
  return {
    takeMessages: () => batches.shift() ?? null,
    takeLarge: (id: number) => {
      const b = larges.get(id) ?? null;
      if (b !== null && !names.has(b)) names.set(b, `large${id}`);
      return b;
    },
    giveBack: (b: ArrayBuffer) => void events.push(`back ${names.get(b)}`),
  } as unknown as NativeUcx;
}

describe('UCX inbox', () => {
  it('gives each batch and rendezvous buffer back after delivering it, in arrival order', () => {
    const events: string[] = [];
    const big = new Uint8Array(100000).fill(7);
    const larges = new Map<number, ArrayBuffer | null>([[5, null]]);
    const ucx = fakeUcx([batch([{ source: 1, tag: 10, payload: Uint8Array.of(1, 2, 3) }, { source: 1, tag: 11, large: 5, length: big.length }, { source: 2, tag: 12, payload: Uint8Array.of(4) }])], larges, events);
    const sink = { arrived: (source: number, tag: number, _d: number, p: TypedArray) => void events.push(`msg ${source}/${tag} ${p.byteLength}`) };
    const inbox = new Inbox(ucx, sink);
    expect(inbox.deliver()).toBe(1); // the rendezvous has not arrived: what follows waits
    expect(events).toEqual(['msg 1/10 3']);
    expect(inbox.waiting).toBe(true);
    larges.set(5, big.buffer);
    expect(inbox.deliver()).toBe(2);
    expect(events).toEqual(['msg 1/10 3', 'msg 1/11 100000', 'back large5', 'msg 2/12 1', 'back batch0']);
    expect(inbox.waiting).toBe(false);
  });

  it('gives a rendezvous buffer back even when the sink throws', () => {
    const events: string[] = [];
    const larges = new Map<number, ArrayBuffer | null>([[3, new ArrayBuffer(64)]]);
    const ucx = fakeUcx([batch([{ source: 0, tag: 1, large: 3, length: 64 }])], larges, events);
    const inbox = new Inbox(ucx, { arrived: () => { throw new Error('sink failed'); } });
    expect(() => inbox.deliver()).toThrow('sink failed');
    expect(events).toEqual(['back large3']);
  });
});
