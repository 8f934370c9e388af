/**
 * A rank's UCX transport: one UCP context and worker, the symmetric heap
 * registered (its rkey goes in the rank's card), the endpoints to peers, and
 * the completions of operations in flight. The rank's progress engine calls
 * progress(); a native progress thread (open({ progressThread })) also
 * progresses the worker while JavaScript computes, which over UCX's TCP
 * transport is what lets a busy rank's peers complete their gets and atomics
 * (UCX emulates them with active messages the target must serve).
 */
import { MprunError } from '../../core/errors.js';
import type { TypedArray } from '../../core/types.js';
import { flushAll, type EndpointCaps, type MessageSink, type SendCompletion, type TransportInstance } from '../endpoint.js';
import { native } from '../../native/index.js';
import type { NativeUcx } from '../../native/index.js';
import { cardCheck, toBase64 } from './card.js';
import type { UcxCard } from './card.js';
import { UcxEndpoint, Width } from './endpoint.js';
import { Inbox } from './inbox.js';
import { Slots } from './slots.js';
import type { SlotOwner } from './slots.js';

export interface UcxTransportOptions {
  /** This rank's world rank (the source of its messages). */
  rank: number;
  /** The symmetric heap, registered with UCX (an external ArrayBuffer over shared memory, or any memory). */
  heap: ArrayBuffer | ArrayBufferView;
  /** Where arriving messages go. */
  sink: MessageSink;
  /** Progress the worker on a native thread while JavaScript does not (default: $MPRUN_UCX_PROGRESS_THREAD, else on). */
  progressThread?: boolean;
  /** UCP's hint of how many endpoints this rank will have (the job's size). */
  estimatedEps?: number;
  /** How long the progress thread polls after serving peers before it sleeps (us; 0, the default: never). */
  progressSpinMicros?: number;
}

/**
 * How long a rank's UCX progress thread polls after serving before it sleeps:
 * 50 us where the node leaves a spare core for each rank's thread (each rank has
 * one, unlike the agents' single serving thread), else none, and none when
 * MPRUN_SPIN_US=0 asks for no polling at all. Across the namespace link a get
 * took 18.5 us with the thread waking from epoll and 12 with it polling.
 */
export function progressSpinMicros(localRanks: number, cores: number, env: string | undefined = process.env.MPRUN_SPIN_US): number {
  if (env !== undefined && env !== 'auto' && Number(env) === 0) return 0;
  return 2 * localRanks <= cores ? 50 : 0;
}

const GET = 1;
const ATOMIC = 2;
const FLUSH = 3;
const SEND = 4;
const PUT = 5;

/**
 * Measured between two processes on the reference machine over UCX_TLS=tcp
 * (loopback), medians (README, "UCX transport"): 8-byte put+flush 15-16 us
 * (a round trip: one way is taken as half), 1 MiB put+flush 1.2-1.5 GB/s,
 * get 1.7-1.8 GB/s.
 */
export const UCX_TCP_LATENCY = 8e-6;
export const UCX_TCP_BANDWIDTH = 1.4e9;

/**
 * A send (or a flush waited for in place) that UCX completes later: done
 * throws the error it failed with (as a QueuedSend's does), so the caller sees it.
 */
class PendingSend implements SendCompletion {
  completed = false;
  error: MprunError | null = null;
  /** Holds the payload alive until UCX is done with it. */
  payload: TypedArray | null;
  constructor(payload: TypedArray | null) {
    this.payload = payload;
  }
  get done(): boolean {
    if (this.error !== null) throw this.error;
    return this.completed;
  }
}

export class UcxTransport implements TransportInstance, SlotOwner {
  readonly name = 'ucx';
  readonly rank: number;
  /** This rank's card: publish it; peers bind with connect(rank, card). */
  readonly card: UcxCard;
  /** The worker's event fd (epoll): readable after arm() returned true and something arrived. */
  readonly efd: number;
  readonly progressThread: boolean;
  /** UCX's resources for this context ("tcp/lo", "sysv/memory", ...). */
  readonly resources: readonly string[];
  /**
   * Small puts go as our own active messages, acknowledged by the target
   * (native/ucx-put.cc), not as UCP puts: where UCX's only network is TCP, whose
   * RMA is software anyway and whose flush costs a second message each way.
   * MPRUN_UCX_PUTS=am or =rma forces one or the other.
   */
  readonly putsAsMessages: boolean;
  readonly caps: EndpointCaps;
  readonly #ucx: NativeUcx;
  readonly #slots: Slots;
  readonly #inbox: Inbox;
  readonly #heapId: number;
  readonly #endpoints = new Set<UcxEndpoint>();
  // Per-slot state of operations in flight (parallel arrays: nothing allocated per completion).
  readonly #kind: Uint8Array;
  readonly #width: Uint8Array;
  readonly #peer: Int32Array;
  readonly #resolve: (((v: never) => void) | null)[];
  readonly #reject: (((e: Error) => void) | null)[];
  readonly #hold: (TypedArray | PendingSend | null)[];
  #closed = false;
  /** The first failure of a put_nbi, reported by the next flush or quiet (no promise waits on one). */
  #failedPut: MprunError | null = null;

  private constructor(o: UcxTransportOptions, ucx: NativeUcx) {
    this.rank = o.rank;
    this.#ucx = ucx;
    const thread = o.progressThread ?? process.env.MPRUN_UCX_PROGRESS_THREAD !== '0';
    const opened = ucx.open({ progressThread: thread, estimatedEps: o.estimatedEps ?? 0, spinUs: o.progressSpinMicros ?? 0 });
    try {
      this.efd = opened.efd;
      this.progressThread = opened.progressThread;
      this.resources = resourcesOf(opened.contextInfo);
      const puts = process.env.MPRUN_UCX_PUTS;
      this.putsAsMessages = puts === 'am' ? true : puts === 'rma' ? false : softwareRma(this.resources);
      this.#slots = new Slots(opened.control, opened.slots);
      this.#inbox = new Inbox(ucx, o.sink);
      const view = o.heap instanceof ArrayBuffer ? new Uint8Array(o.heap) : new Uint8Array(o.heap.buffer, o.heap.byteOffset, o.heap.byteLength);
      const m = ucx.memMap(view);
      this.#heapId = m.id;
      this.card = { address: toBase64(opened.address), heap: String(m.address), heapBytes: view.byteLength, rkey: toBase64(m.rkey), check: cardCheck(opened.address, m.rkey) };
    } catch (e) {
      ucx.close();
      throw e;
    }
    const n = this.#slots.count;
    this.#kind = new Uint8Array(n);
    this.#width = new Uint8Array(n);
    this.#peer = new Int32Array(n);
    this.#resolve = new Array<null>(n).fill(null);
    this.#reject = new Array<null>(n).fill(null);
    this.#hold = new Array<null>(n).fill(null);
    this.caps = Object.freeze({
      canMap: false,
      atomics: true,
      putCompleteOnReturn: false,
      progressWithoutTarget: this.progressThread,
      latency: UCX_TCP_LATENCY,
      bandwidth: UCX_TCP_BANDWIDTH,
    });
  }

  /** Opens UCX for this rank (one per process); throws MprunError ERR_MPRUN_UCX saying why it cannot. */
  static open(options: UcxTransportOptions): UcxTransport {
    const ucx = native().ucx;
    const p = ucx.probe();
    if (!p.loaded) throw new MprunError('ERR_MPRUN_UCX', `UCX is not usable: ${p.reason}`);
    return new UcxTransport(options, ucx);
  }

  /** The endpoint to world rank `peer`, from its card; the UCP endpoint is made at its first operation. */
  connect(peer: number, card: UcxCard): UcxEndpoint {
    if (this.#closed) throw new MprunError('ERR_MPRUN_UCX', 'the UCX transport is closed');
    const ep = new UcxEndpoint(this, this.#ucx, peer, card, this.caps);
    this.#endpoints.add(ep);
    return ep;
  }

  progress(): boolean {
    if (this.#closed) return false;
    const events = this.#ucx.progress();
    let did = events > 0;
    if (this.#slots.drain() > 0) did = true;
    if (this.#slots.inboxWaiting() || this.#inbox.waiting) {
      if (this.#inbox.deliver() > 0) did = true;
    }
    return did;
  }

  busy(): boolean {
    return this.#slots.inFlight > 0 || this.#inbox.waiting;
  }

  /** Every put of this rank complete at its target (OpenSHMEM quiet: a worker flush). */
  quiet(): Promise<void> | undefined {
    this.throwFailedPut();
    if (this.putsAsMessages) {
      // Our own puts are acknowledged per endpoint; UCP's worker flush knows nothing of them.
      return flushAll(this.#endpoints)?.then(() => undefined);
    }
    const slot = this.takeSlot();
    let pending: 0 | 1;
    try {
      pending = this.#ucx.flush(-1, slot);
    } catch (e) {
      this.giveSlot(slot);
      throw e;
    }
    if (pending === 0) {
      this.giveSlot(slot);
      return undefined;
    }
    return this.awaitFlush(slot, -1);
  }

  /** true: nothing is pending and the caller may sleep until `efd` is readable. */
  arm(): boolean {
    return this.#ucx.arm();
  }

  close(): void {
    if (this.#closed) return;
    for (const ep of [...this.#endpoints]) ep.close();
    this.#closed = true;
    this.#ucx.memUnmap(this.#heapId);
    this.#ucx.close();
  }

  // ---- for UcxEndpoint ----

  /** A free slot, progressing until one is (every slot in flight). */
  takeSlot(): number {
    let slot = this.#slots.take(this);
    while (slot < 0) {
      this.progress();
      slot = this.#slots.take(this);
    }
    return slot;
  }

  giveSlot(slot: number): void {
    this.#slots.give(slot);
  }

  forget(ep: UcxEndpoint): void {
    this.#endpoints.delete(ep);
  }

  atomicResult(slot: number, width: Width): number | bigint {
    switch (width) {
      case Width.I32: return this.#slots.result32[slot * 2]!;
      case Width.U32: return this.#slots.result32[slot * 2]! >>> 0;
      case Width.I64: return this.#slots.result64[slot]!;
      default: return BigInt.asUintN(64, this.#slots.result64[slot]!);
    }
  }

  awaitGet(slot: number, peer: number, dst: Uint8Array): Promise<void> {
    this.#kind[slot] = GET;
    this.#peer[slot] = peer;
    this.#hold[slot] = dst;
    return new Promise<void>((resolve, reject) => {
      this.#resolve[slot] = resolve as (v: never) => void;
      this.#reject[slot] = reject;
    });
  }

  awaitAtomic(slot: number, peer: number, width: Width): Promise<number | bigint> {
    this.#kind[slot] = ATOMIC;
    this.#peer[slot] = peer;
    this.#width[slot] = width;
    return new Promise<number | bigint>((resolve, reject) => {
      this.#resolve[slot] = resolve as (v: never) => void;
      this.#reject[slot] = reject;
    });
  }

  awaitFlush(slot: number, peer: number): Promise<void> {
    this.#kind[slot] = FLUSH;
    this.#peer[slot] = peer;
    return new Promise<void>((resolve, reject) => {
      this.#resolve[slot] = resolve as (v: never) => void;
      this.#reject[slot] = reject;
    });
  }

  /** A flush polled in place (a fence's): done once it completed, throwing what it failed with. */
  awaitFlushNow(slot: number, peer: number): SendCompletion {
    const c = new PendingSend(null);
    this.#kind[slot] = FLUSH;
    this.#peer[slot] = peer;
    this.#hold[slot] = c;
    return c;
  }

  /** A put_nbi in flight: `src` is held until it completes. */
  awaitPut(slot: number, peer: number, src: TypedArray): void {
    this.#kind[slot] = PUT;
    this.#peer[slot] = peer;
    this.#hold[slot] = src;
  }

  /** Throws (once) the error a put_nbi failed with since the last flush or quiet. */
  throwFailedPut(): void {
    const e = this.#failedPut;
    if (e === null) return;
    this.#failedPut = null;
    throw e;
  }

  awaitSend(slot: number, peer: number, payload: TypedArray): SendCompletion {
    const c = new PendingSend(payload);
    this.#kind[slot] = SEND;
    this.#peer[slot] = peer;
    this.#hold[slot] = c;
    return c;
  }

  /** SlotOwner: an operation completed inside progress (status 0, or a negative ucs_status_t). */
  completed(slot: number, status: number): void {
    const kind = this.#kind[slot]!;
    const peer = this.#peer[slot]!;
    const resolve = this.#resolve[slot];
    const reject = this.#reject[slot];
    const hold = this.#hold[slot];
    this.#resolve[slot] = null;
    this.#reject[slot] = null;
    this.#hold[slot] = null;
    const error = status === 0 ? null : this.#error(kind, peer, status, hold);
    if (kind === PUT) {
      if (error !== null) this.#failedPut ??= error;
      return;
    }
    if (hold instanceof PendingSend) {
      const c = hold;
      c.payload = null;
      c.error = error;
      c.completed = true;
      return;
    }
    if (error !== null) {
      reject?.(error);
      return;
    }
    const value = kind === ATOMIC ? this.atomicResult(slot, this.#width[slot] as Width) : undefined;
    (resolve as ((v: unknown) => void) | null)?.(value);
  }

  #error(kind: number, peer: number, status: number, hold: TypedArray | PendingSend | null): MprunError {
    const what =
      kind === GET ? `get of ${(hold as TypedArray).byteLength} bytes from rank ${peer}`
      : kind === PUT ? `put of ${(hold as TypedArray).byteLength} bytes to rank ${peer}`
      : kind === ATOMIC ? `atomic on rank ${peer}`
      : kind === SEND ? `send of ${(hold as PendingSend).payload?.byteLength ?? 0} bytes to rank ${peer}`
      : peer < 0 ? 'quiet (flush of every endpoint)' : `flush to rank ${peer}`;
    // A put of ours that the target refused (native/ucx-put.cc) fails the flush that waits for it.
    const why = kind === FLUSH && status === UCS_ERR_INVALID_ADDR ? 'a put was refused there (outside its registered memory): ' : '';
    return new MprunError('ERR_MPRUN_UCX', `${what} failed: ${why}${this.#ucx.statusString(status)}`, peer >= 0 ? { rank: peer } : undefined);
  }
}

/** ucs_status_t's UCS_ERR_INVALID_ADDR: how a target refuses a put outside its registered memory. */
const UCS_ERR_INVALID_ADDR = -7;

/** Transports that reach only this node (UCX's own shared memory); every other one is a network. */
const NODE_ONLY = new Set(['self', 'sysv', 'posix', 'cma', 'knem', 'xpmem']);

/** Whether UCX's every network resource ("tl/device") is TCP, whose puts and gets UCX emulates in software. */
export function softwareRma(resources: readonly string[]): boolean {
  const network = resources.map((r) => r.split('/')[0]!).filter((tl) => !NODE_ONLY.has(tl));
  return network.length > 0 && network.every((tl) => tl === 'tcp');
}

/** "tl/device" of every resource line of ucp_context_print_info ("#      resource 2  :  md 1  dev 2  flags -- tcp/lo"). */
export function resourcesOf(contextInfo: string): string[] {
  const out: string[] = [];
  for (const m of contextInfo.matchAll(/resource\s+\d+\s+:\s+md\s+\d+\s+dev\s+\d+\s+flags\s+\S+\s+(\S+)/g)) out.push(m[1]!);
  return out;
}
