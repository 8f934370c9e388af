/**
 * Remote memory access served by the agent on its node's ranks' heaps, so
 * that one-sided operations complete while the target rank computes: a PUT's
 * payload streams straight into the target heap (then the rank is woken), a
 * GET's reply is sent from the heap without a copy, an AMO runs on the heap
 * with the same atomics the ranks use, and a FLUSH is answered in order
 * after every earlier PUT on the connection has landed (they land as they
 * arrive).
 */
import { WAKE_HEAP } from '../shm/control.js';
import { DsmFrame, frame, HEADER_BYTES, writeHeader, type Header } from './frames.js';
import type { NodeHeaps } from './node-heaps.js';
import { applyRemoteAtomic, atomicReply } from './remote-atomic.js';

export class RemoteMemoryAccess {
  readonly #heaps: NodeHeaps;

  constructor(heaps: NodeHeaps) {
    this.#heaps = heaps;
  }

  /** Where a PUT's payload lands: its range of the target's heap. */
  putTarget(h: Header): Uint8Array {
    return this.#heaps.range(h.target, h.offset, h.bytes - HEADER_BYTES, 'PUT');
  }

  /** A PUT's payload has landed: wakes its rank. */
  putLanded(h: Header): void {
    this.#heaps.ringAfterStores(this.#heaps.local(h.target, 'PUT'), WAKE_HEAP);
  }

  /** Checks a GET's range when its header arrives. */
  checkGet(h: Header): void {
    this.#heaps.range(h.target, h.offset, h.length, 'GET');
  }

  /** The GET_REPLY: its header, then the heap's bytes themselves (not copied). */
  get(h: Header): [Buffer, Buffer] {
    const bytes = this.#heaps.range(h.target, h.offset, h.length, 'GET');
    const head = Buffer.allocUnsafe(HEADER_BYTES);
    writeHeader(head, 0, DsmFrame.GET_REPLY, h.length, { id: h.id });
    return [head, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)];
  }

  /** Runs an AMO on the target's heap and wakes its rank; the AMO_REPLY. */
  atomic(h: Header, operands: Uint8Array): Buffer {
    const l = this.#heaps.local(h.target, 'AMO');
    const old = applyRemoteAtomic(this.#heaps.heap(l), 0, h, operands);
    this.#heaps.ring(l, WAKE_HEAP);
    return atomicReply(h.id, old);
  }

  /** The FLUSH_REPLY: every PUT before it on the connection has landed. */
  flush(h: Header): Buffer {
    return frame(DsmFrame.FLUSH_REPLY, { id: h.id });
  }
}
