/** Values as MsgCollectives moves them between leaders: lists split into messages, contributions assembled. */
import { allocate, DTYPE_MSGPACK, dtypeOf, finish } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import { bytesOf, isTyped } from './engine.js';
import { payloadBytes } from './stats.js';

/** A list of records (`unit` items each) in chunks of about `maxBytes` at most; a larger record is a chunk alone. At least one chunk. */
export function splitList(items: unknown[], unit: number, maxBytes: number): unknown[][] {
  const chunks: unknown[][] = [];
  let cur: unknown[] = [];
  let bytes = 0;
  for (let i = 0; i < items.length; i += unit) {
    let b = 0;
    for (let u = 0; u < unit; u++) b += payloadBytes(items[i + u]);
    if (cur.length > 0 && bytes + b > maxBytes) {
      chunks.push(cur);
      cur = [];
      bytes = 0;
    }
    for (let u = 0; u < unit; u++) cur.push(items[i + u]);
    bytes += b;
  }
  chunks.push(cur);
  return chunks;
}

/** Every member's value: concatenated when all are typed arrays of one type, else the values. */
export function assemble(values: unknown[]): unknown {
  const d0 = dtypeOf(values[0]);
  if (d0 !== DTYPE_MSGPACK && values.every((v) => isTyped(v) && dtypeOf(v) === d0)) {
    const total = values.reduce<number>((a, v) => a + (v as TypedArray).byteLength, 0);
    const out = allocate(d0, total);
    const o = bytesOf(out);
    let off = 0;
    for (const v of values) {
      o.set(bytesOf(v as TypedArray), off);
      off += (v as TypedArray).byteLength;
    }
    return finish(d0, out);
  }
  return values;
}
