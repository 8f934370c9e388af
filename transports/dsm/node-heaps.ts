/**
 * The symmetric heaps of the ranks on the agent's node, as the agent sees
 * them: world rank to local rank, each heap attached on first use (once its
 * rank has published it in the control segment) and checked ranges of it.
 */
import { WAKE_HEAP, type ControlSegment } from '../shm/control.js';
import type { AmoServer } from './amo.js';
import * as xpmem from '../xpmem/index.js';
import { RequestRefused } from './frames.js';

export class NodeHeaps {
  readonly #ctrl: ControlSegment;
  readonly #localOf = new Map<number, number>();
  readonly #heaps: Array<{ buffer: ArrayBuffer; attachment: xpmem.Attachment } | null>;
  readonly #ranks: readonly number[];
  /** The native serving thread of atomics (amo.ts), given each heap once attached. */
  #atomics: AmoServer | null = null;

  /** `ranks`: the world rank of each local rank. */
  constructor(ctrl: ControlSegment, ranks: readonly number[]) {
    this.#ctrl = ctrl;
    this.#ranks = ranks;
    ranks.forEach((w, l) => this.#localOf.set(w, l));
    this.#heaps = ranks.map(() => null);
  }

  /** The local rank of world rank `worldRank`; `what` names the request refused when it is not on this node. */
  local(worldRank: number, what: string): number {
    const l = this.#localOf.get(worldRank);
    if (l === undefined) throw new RequestRefused(`${what} for rank ${worldRank}, which is not on this node`);
    return l;
  }

  /** Local rank `l`'s heap, attached on first use. */
  heap(l: number): ArrayBuffer {
    let h = this.#heaps[l];
    if (h === null || h === undefined) {
      const pub = this.#ctrl.heapOf(l);
      if (pub === null) throw new RequestRefused(`local rank ${l} has not published its heap yet`);
      const attachment = xpmem.attachWhole(pub.segid, pub.bytes);
      const buffer = xpmem.mappedBuffer(attachment);
      if (buffer === null) {
        attachment.detach();
        throw new RequestRefused('this node cannot map its ranks\' heaps (XPMEM backend cma); set MPRUN_XPMEM_BACKEND=shm');
      }
      h = { buffer, attachment };
      this.#heaps[l] = h;
      this.#serve(l, buffer);
    }
    return h.buffer;
  }

  /**
   * Serves atomics on the heaps on `server` too, each once attached here (the
   * first request for a heap comes through the agent's connection, which
   * attaches it; the server answers "not served" until then).
   */
  serveAtomics(server: AmoServer): void {
    this.#atomics = server;
    this.#heaps.forEach((h, l) => {
      if (h !== null) this.#serve(l, h.buffer);
    });
  }

  #serve(l: number, buffer: ArrayBuffer): void {
    const c = this.#ctrl;
    this.#atomics?.registerHeap(this.#ranks[l]!, buffer, c.i32, c.sleepingIndex(l), c.doorIndex(l), WAKE_HEAP);
  }

  /** The bytes [offset, offset + length) of a world rank's heap, after checking they exist. */
  range(worldRank: number, offset: number, length: number, what: string): Uint8Array {
    const heap = this.heap(this.local(worldRank, what));
    if (offset + length > heap.byteLength) throw new RequestRefused(`${what} of [${offset}, ${offset + length}) is outside rank ${worldRank}'s heap of ${heap.byteLength} bytes`);
    return new Uint8Array(heap, offset, length);
  }

  /** Wakes local rank `l` for `reason` (a WAKE_* bit): its memory changed. */
  ring(l: number, reason: number): void {
    this.#ctrl.ring(l, reason);
  }

  /** ring() after a put's bytes landed in local rank l's heap (ControlSegment.ringAfterStores). */
  ringAfterStores(l: number, reason: number): void {
    this.#ctrl.ringAfterStores(l, reason);
  }

  close(): void {
    for (const h of this.#heaps) h?.attachment.detach();
  }
}
