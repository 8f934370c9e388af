/**
 * The symmetric heap: one shared segment per rank, carved by the same
 * deterministic allocator on every rank, so that an allocation has the same
 * offset everywhere and a peer's copy is found at that offset of its heap.
 */
import { MprunError } from '../core/errors.js';

export const HEAP_ALIGN = 64;

export class SymmetricHeap {
  #top = 0;
  constructor(readonly buffer: ArrayBuffer) {}

  get used(): number {
    return this.#top;
  }

  /** Reserves `bytes` at a 64-byte aligned offset (a cache line, and any element size). */
  reserve(bytes: number): number {
    const offset = this.#top;
    const next = offset + Math.ceil(Math.max(bytes, 1) / HEAP_ALIGN) * HEAP_ALIGN;
    if (next > this.buffer.byteLength) {
      throw new MprunError('ERR_MPRUN_HEAP_EXHAUSTED', `symmetric heap exhausted: ${bytes} bytes requested, ${this.buffer.byteLength - offset} of ${this.buffer.byteLength} left; raise MPRUN_HEAP_SIZE (mprun -x MPRUN_HEAP_SIZE=1G)`);
    }
    this.#top = next;
    return offset;
  }
}
