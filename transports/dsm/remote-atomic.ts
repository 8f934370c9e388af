/**
 * An atomic request served at an agent (AMO on a rank's heap, VAR_AMO on a
 * shared variable's home copy): the operation and element type from the
 * frame's aux, the operands from its payload, checked against the memory
 * before the operation runs on it; and the AMO_REPLY that carries the old
 * value back.
 */
import { DTYPE_CTORS } from '../../core/codec.js';
import { applyAtomic, isBigDtype } from '../atomics.js';
import { readOperand, writeOperand } from './atomic.js';
import { DsmFrame, HEADER_BYTES, RequestRefused, writeHeader, type Header } from './frames.js';

/** Applies the atomic of `h` (operands in `payload`) at byte `base + h.offset` of `buffer`; its old value. */
export function applyRemoteAtomic(buffer: ArrayBuffer, base: number, h: Header, payload: Uint8Array): number | bigint {
  const op = h.aux & 0xff;
  const dtype = h.aux >> 8;
  const Ctor = DTYPE_CTORS[dtype - 1];
  if (Ctor === undefined) throw new RequestRefused(`atomic on unknown type code ${dtype}`);
  const at = base + h.offset;
  if (at + Ctor.BYTES_PER_ELEMENT > buffer.byteLength || at % Ctor.BYTES_PER_ELEMENT !== 0) throw new RequestRefused(`atomic at byte ${h.offset} is outside or misaligned`);
  const big = isBigDtype(dtype);
  const unsigned = Ctor === BigUint64Array;
  try {
    return applyAtomic(buffer, dtype, at, op, readOperand(payload, 0, big, unsigned), readOperand(payload, 8, big, unsigned));
  } catch (e) {
    throw new RequestRefused((e as Error).message);
  }
}

/** The AMO_REPLY to request `id`: the old value as an 8-byte operand. */
export function atomicReply(id: number, old: number | bigint): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + 8);
  writeHeader(out, 0, DsmFrame.AMO_REPLY, 8, { id });
  writeOperand(out, HEADER_BYTES, old);
  return out;
}
