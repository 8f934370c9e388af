/**
 * A peer on this node: its heap attached through the XPMEM API (kernel
 * XPMEM, or the memfd fallback) on first use, so a put is one TypedArray.set
 * into the peer's memory (one copy, no syscall, no work for the target) and
 * an atomic is a hardware atomic on it; with the CMA backend (no mapping) a
 * put or get is one process_vm_writev/readv, and atomics are unsupported.
 * Whoever writes rings the peer's doorbell, which it may sleep on.
 */
import { MprunError } from '../../core/errors.js';
import type { TypedArray, TypedArrayConstructor } from '../../core/types.js';
import { native } from '../../native/index.js';
import { AtomicOp, type AtomicOpCode, type Endpoint, type EndpointCaps, type SendCompletion } from '../endpoint.js';
import { atomicAt } from '../atomics.js';
import type { LazyAttachment } from '../xpmem/index.js';
import { WAKE_HEAP, type ControlSegment } from './control.js';
import type { ShmMessages } from './messages.js';

/** Above this many bytes a put ends with a full fence: memcpy uses non-temporal stores there. */
const NT_STORE_BYTES = 256 * 1024;

/** Measured on the reference machine (README): a flag ping-pong 0.06 us one way in JS, memcpy ~11-40 GB/s. */
const MAPPED: EndpointCaps = { canMap: true, atomics: true, putCompleteOnReturn: true, progressWithoutTarget: true, latency: 3e-7, bandwidth: 11e9 };
/** CMA: one syscall per operation, about 11 GB/s at 1 MiB. */
const CMA: EndpointCaps = { canMap: false, atomics: false, putCompleteOnReturn: true, progressWithoutTarget: true, latency: 1.5e-6, bandwidth: 11e9 };

/** What an endpoint over this XPMEM backend does: the CMA backend copies, the others map. */
export function shmCaps(backend: string): EndpointCaps {
  return backend === 'cma' ? CMA : MAPPED;
}

export interface ShmPeer {
  rank: number;
  localRank: number;
  pid: number;
  /** The peer's heap and collective scratch, attached on first use. */
  heap: LazyAttachment;
  scratch: LazyAttachment;
  /** The heap's address in the peer (for CMA). */
  heapAddress: bigint;
}

export class ShmEndpoint implements Endpoint {
  readonly name: string;
  readonly caps: EndpointCaps;
  readonly #peer: ShmPeer;
  readonly #ctrl: ControlSegment;
  readonly #messages: ShmMessages;
  /** The last typed view of the whole heap used (puts of one type in a row reuse it). */
  #viewCtor: unknown = null;
  #view: TypedArray | null = null;
  #i32: Int32Array | null = null;
  #i64: BigInt64Array | null = null;

  constructor(peer: ShmPeer, ctrl: ControlSegment, messages: ShmMessages, backend: string) {
    this.#peer = peer;
    this.#ctrl = ctrl;
    this.#messages = messages;
    this.name = `xpmem/${backend}`;
    this.caps = shmCaps(backend);
  }

  map(): ArrayBuffer | null {
    return this.caps.canMap ? this.#peer.heap.buffer : null;
  }

  mapScratch(): ArrayBuffer | null {
    return this.caps.canMap ? this.#peer.scratch.buffer : null;
  }

  /** A view of the whole heap with `src`'s element type. */
  #viewLike(src: TypedArray): TypedArray {
    if (src.constructor !== this.#viewCtor) {
      const Ctor = src.constructor as TypedArrayConstructor<TypedArray>;
      const heap = this.#peer.heap.buffer!;
      this.#view = new Ctor(heap, 0, Math.floor(heap.byteLength / Ctor.BYTES_PER_ELEMENT));
      this.#viewCtor = Ctor;
    }
    return this.#view!;
  }

  put(offset: number, src: TypedArray): void {
    if (!this.caps.canMap) {
      native().cmaWrite(this.#peer.pid, this.#peer.heapAddress + BigInt(offset), src);
    } else {
      (this.#viewLike(src) as Float64Array).set(src as unknown as Float64Array, offset / src.BYTES_PER_ELEMENT);
      if (src.byteLength >= NT_STORE_BYTES) native().fence();
    }
    this.#ctrl.ringAfterStores(this.#peer.localRank, WAKE_HEAP);
  }

  get(offset: number, dst: TypedArray): undefined {
    if (!this.caps.canMap) {
      native().cmaRead(this.#peer.pid, this.#peer.heapAddress + BigInt(offset), dst);
      return undefined;
    }
    const at = offset / dst.BYTES_PER_ELEMENT;
    (dst as Float64Array).set((this.#viewLike(dst) as Float64Array).subarray(at, at + dst.length));
    return undefined;
  }

  atomic(op: AtomicOpCode, _dtype: number, offset: number, a: number | bigint, b: number | bigint): number | bigint {
    if (!this.caps.canMap) throw new MprunError('ERR_MPRUN_UNSUPPORTED', `atomics on rank ${this.#peer.rank}: its memory is reached by CMA (copies only), not mapped; use the shm or kernel XPMEM backend`);
    const heap = this.#peer.heap.buffer!;
    const old =
      typeof a === 'bigint'
        ? atomicAt((this.#i64 ??= new BigInt64Array(heap, 0, Math.floor(heap.byteLength / 8))), offset / 8, op, a, b)
        : atomicAt((this.#i32 ??= new Int32Array(heap, 0, Math.floor(heap.byteLength / 4))), offset / 4, op, a, b);
    if (op !== AtomicOp.FETCH) this.#ctrl.ring(this.#peer.localRank, WAKE_HEAP);
    return old;
  }

  flush(): undefined {
    // Stores to shared memory are complete once made; order them before what follows.
    native().fence();
    return undefined;
  }

  send(tag: number, dtype: number, payload: TypedArray, stable: boolean): SendCompletion {
    return this.#messages.send(this.#peer.localRank, tag, dtype, payload, stable);
  }

  close(): void {
    this.#peer.heap.detach();
    this.#peer.scratch.detach();
  }
}
