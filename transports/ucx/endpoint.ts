/**
 * One peer over UCX: put/get/atomics as UCP one-sided operations on the
 * peer's registered heap, flush as ucp_ep_flush_nbx, messages as active
 * messages (inbox.ts). The UCP endpoint and the peer's rkey are made on first
 * use (wire-up that scales: a rank talks only to the peers it uses).
 */
import { copyPayload, DTYPE_BYTES, DTYPE_CTORS } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import { AtomicOp, SENT } from '../endpoint.js';
import type { AtomicOpCode, Endpoint, EndpointCaps, SendCompletion } from '../endpoint.js';
import type { NativeUcx } from '../../native/index.js';
import { checkCard, fromBase64 } from './card.js';
import type { UcxCard } from './card.js';
import type { UcxTransport } from './transport.js';

/** Unstable payloads up to this many bytes are copied before a send (larger ones are waited for). */
const UNSTABLE_COPY = 64 << 10;

/**
 * Puts up to this many bytes go as our own active messages where the transport
 * says so (UcxTransport.putsAsMessages); larger ones as UCP puts.
 */
const AM_PUT_MAX = 64 << 10;

/** UCP's atomic operation codes (ucp_atomic_op_t). */
const UCP_ADD = 0;
const UCP_SWAP = 1;
const UCP_CSWAP = 2;

/** How an atomic's element type maps onto UCP: its size, and how the old value reads back. */
export const enum Width {
  I32 = 1,
  U32 = 2,
  I64 = 3,
  U64 = 4,
}

export function widthOf(dtype: number): Width {
  const c = DTYPE_CTORS[dtype - 1] as unknown;
  if (c === Int32Array) return Width.I32;
  if (c === Uint32Array) return Width.U32;
  if (c === BigInt64Array) return Width.I64;
  if (c === BigUint64Array) return Width.U64;
  throw new TypeError(`UCX atomics work on Int32Array, Uint32Array, BigInt64Array and BigUint64Array, not type code ${dtype}`);
}

export class UcxEndpoint implements Endpoint {
  readonly peer: number;
  readonly caps: EndpointCaps;
  readonly #transport: UcxTransport;
  readonly #ucx: NativeUcx;
  readonly #card: UcxCard;
  readonly #heap: number;
  readonly #heapBytes: number;
  #ep = -1;
  #rkey = -1;
  #name = 'ucx';
  #closed = false;
  /** Issued since the last flush: puts as our own active messages; UCP's puts or atomics still in flight. */
  #amPuts = false;
  #ucpOps = false;
  /** A fence() came after active-message puts still in flight: a UCP put after it completes them first. */
  #fenced = false;

  constructor(transport: UcxTransport, ucx: NativeUcx, peer: number, card: UcxCard, caps: EndpointCaps) {
    this.#transport = transport;
    this.#ucx = ucx;
    this.peer = peer;
    this.#card = checkCard(card, `rank ${peer}`);
    this.#heap = Number(card.heap);
    this.#heapBytes = card.heapBytes;
    this.caps = caps;
  }

  /** ucx/<transports of its lanes> once connected ("ucx/tcp", "ucx/sysv,posix,cma"), "ucx" before (read from UCX each time: lanes change when wire-up completes). */
  get name(): string {
    if (this.#ep >= 0) this.#name = `ucx/${lanesOf(this.#ucx.epInfo(this.#ep)).join(',') || '?'}`;
    return this.#name;
  }

  /** Whether the UCP endpoint exists (it is made at the first operation). */
  get connected(): boolean {
    return this.#ep >= 0;
  }

  /** Makes the UCP endpoint and unpacks the peer's rkey now (else done at the first operation). */
  connect(): void {
    if (this.#ep >= 0) return;
    if (this.#closed) throw new RangeError(`the UCX endpoint to rank ${this.peer} is closed`);
    const ep = this.#ucx.epCreate(fromBase64(this.#card.address), `rank ${this.peer}`);
    try {
      this.#rkey = this.#ucx.rkeyUnpack(ep, fromBase64(this.#card.rkey));
    } catch (e) {
      this.#ucx.epClose(ep);
      throw e;
    }
    this.#ep = ep;
  }

  map(): ArrayBuffer | null {
    return null;
  }

  mapScratch(): ArrayBuffer | null {
    return null;
  }

  #address(offset: number, bytes: number): number {
    if (this.#ep < 0) this.connect();
    if (offset < 0 || offset + bytes > this.#heapBytes) throw new RangeError(`[${offset}, ${offset + bytes}) is outside rank ${this.peer}'s heap of ${this.#heapBytes} bytes`);
    return this.#heap + offset;
  }

  #asMessage(bytes: number): boolean {
    const am = bytes <= AM_PUT_MAX && this.#transport.putsAsMessages;
    if (am) this.#amPuts = true;
    else {
      if (this.#fenced) this.#flushNow();
      this.#ucpOps = true;
    }
    return am;
  }

  /**
   * Orders the puts issued before it before those after it, at the peer
   * (World.fence(), OpenSHMEM's fence), and before atomics after it. Our own
   * active-message puts keep their order among themselves (one eager lane of
   * one endpoint); UCP's puts and atomics are ordered neither with them nor
   * among themselves (RDMA lanes): with UCP puts in flight the fence completes
   * them now, and after active-message puts it makes the next UCP put or
   * atomic complete them first (a fence may be a quiet).
   */
  fence(): void {
    if (this.#ep < 0) return;
    if (this.#ucpOps) this.#flushNow();
    else if (this.#amPuts) this.#fenced = true;
  }

  /** flush(), blocking this thread until it completes (the peer's progress acknowledges our puts). */
  #flushNow(): void {
    this.#transport.throwFailedPut();
    const waits: SendCompletion[] = [];
    // Each kind's flag is cleared once its flush is issued (one that throws leaves it for quiet).
    if (this.#amPuts) {
      const slot = this.#onSlot((s) => this.#ucx.flushPuts(this.#ep, s));
      if (slot >= 0) waits.push(this.#transport.awaitFlushNow(slot, this.peer));
      this.#amPuts = false;
    }
    if (this.#ucpOps || !this.#transport.putsAsMessages) {
      const slot = this.#onSlot((s) => this.#ucx.flush(this.#ep, s));
      if (slot >= 0) waits.push(this.#transport.awaitFlushNow(slot, this.peer));
      this.#ucpOps = false;
    }
    this.#fenced = false;
    // done throws what a flush failed with (a refused put, the peer lost).
    for (const c of waits) while (!c.done) this.#transport.progress();
  }

  put(offset: number, src: Uint8Array): void {
    const at = this.#address(offset, src.byteLength);
    if (this.#asMessage(src.byteLength)) this.#ucx.amPut(this.#ep, at, src, -1);
    else this.#ucx.put(this.#ep, this.#rkey, at, src);
  }

  putNbi(offset: number, src: TypedArray): void {
    const at = this.#address(offset, src.byteLength);
    const slot = this.#transport.takeSlot();
    let pending: 0 | 1;
    try {
      if (this.#asMessage(src.byteLength)) pending = this.#ucx.amPut(this.#ep, at, src, slot) as 0 | 1;
      else pending = this.#ucx.putNbi(this.#ep, this.#rkey, at, src, slot);
    } catch (e) {
      this.#transport.giveSlot(slot);
      throw e;
    }
    if (pending === 0) this.#transport.giveSlot(slot);
    else this.#transport.awaitPut(slot, this.peer, src);
  }

  get(offset: number, dst: Uint8Array): Promise<void> | undefined {
    const at = this.#address(offset, dst.byteLength);
    const slot = this.#transport.takeSlot();
    let pending: 0 | 1;
    try {
      pending = this.#ucx.get(this.#ep, this.#rkey, at, dst, slot);
    } catch (e) {
      this.#transport.giveSlot(slot);
      throw e;
    }
    if (pending === 0) {
      this.#transport.giveSlot(slot);
      return undefined;
    }
    return this.#transport.awaitGet(slot, this.peer, dst);
  }

  /** `a`: the operand (the expected value of COMPARE_SWAP); `b`: COMPARE_SWAP's desired value. */
  atomic(op: AtomicOpCode, dtype: number, offset: number, a: number | bigint, b: number | bigint): Promise<number | bigint> | number | bigint {
    const width = widthOf(dtype);
    const size = width === Width.I32 || width === Width.U32 ? 4 : 8;
    if (offset % size !== 0) throw new RangeError(`atomic at byte ${offset} of rank ${this.peer}'s heap is not aligned to ${size}`);
    const at = this.#address(offset, size);
    // OpenSHMEM's fence orders atomics after the puts before it too: UCP's atomics are not ordered with our puts.
    if (this.#fenced) this.#flushNow();
    // native atomic(operand, compare): CSWAP writes `operand` where the element equals `compare`.
    let ucpOp: 0 | 1 | 2;
    let operand = a;
    let compare = b;
    switch (op) {
      case AtomicOp.FETCH_ADD: ucpOp = UCP_ADD; break;
      case AtomicOp.FETCH: ucpOp = UCP_ADD; operand = size === 4 ? 0 : 0n; break; // FETCH: add 0 (atomic with the other atomics)
      case AtomicOp.SWAP: case AtomicOp.SET: ucpOp = UCP_SWAP; break;
      case AtomicOp.COMPARE_SWAP: ucpOp = UCP_CSWAP; operand = b; compare = a; break;
      default: throw new RangeError(`unknown atomic operation ${op as number}`);
    }
    const slot = this.#transport.takeSlot();
    let pending: 0 | 1;
    try {
      pending = this.#ucx.atomic(this.#ep, this.#rkey, at, ucpOp, size, operand, compare, slot);
    } catch (e) {
      this.#transport.giveSlot(slot);
      throw e;
    }
    if (pending === 0) {
      const v = this.#transport.atomicResult(slot, width);
      this.#transport.giveSlot(slot);
      return v;
    }
    // In flight: a fence completes it before the puts after it (a UCP flush does).
    this.#ucpOps = true;
    return this.#transport.awaitAtomic(slot, this.peer, width);
  }

  /**
   * Every put issued so far complete at the peer: our own puts once the peer
   * acknowledged them all, UCP's with ucp_ep_flush_nbx (always, where puts are
   * UCP's: it completes anything else in flight too).
   */
  flush(): Promise<void> | undefined {
    if (this.#ep < 0) return undefined; // nothing was ever issued
    this.#transport.throwFailedPut();
    const am = this.#amPuts;
    const ucp = this.#ucpOps || !this.#transport.putsAsMessages;
    this.#amPuts = false;
    this.#ucpOps = false;
    this.#fenced = false;
    const acks = am ? this.#flushWith((slot) => this.#ucx.flushPuts(this.#ep, slot)) : undefined;
    let ucpFlush: Promise<void> | undefined;
    try {
      ucpFlush = ucp ? this.#flushWith((slot) => this.#ucx.flush(this.#ep, slot)) : undefined;
    } catch (e) {
      acks?.catch(() => undefined); // the error thrown here is the one reported
      throw e;
    }
    if (acks === undefined) return ucpFlush;
    if (ucpFlush === undefined) return acks;
    return Promise.all([acks, ucpFlush]).then(() => undefined);
  }

  #flushWith(issue: (slot: number) => 0 | 1): Promise<void> | undefined {
    const slot = this.#onSlot(issue);
    return slot < 0 ? undefined : this.#transport.awaitFlush(slot, this.peer);
  }

  /** Issues an operation on a slot: the slot while it is in flight, or -1 when it completed in its call (the slot given back). */
  #onSlot(issue: (slot: number) => 0 | 1): number {
    const slot = this.#transport.takeSlot();
    let pending: 0 | 1;
    try {
      pending = issue(slot);
    } catch (e) {
      this.#transport.giveSlot(slot);
      throw e;
    }
    if (pending === 1) return slot;
    this.#transport.giveSlot(slot);
    return -1;
  }

  /**
   * An active message (inbox.ts). UCX may read `payload` after the call (a
   * rendezvous, or a send queued behind a full socket): a `stable` payload is
   * sent as is; otherwise one of up to UNSTABLE_COPY bytes is copied first and
   * a larger one is waited for here (the receiver's progress thread, or its
   * progress, completes it), so the caller may reuse it on return.
   */
  send(tag: number, dtype: number, payload: TypedArray, stable: boolean): SendCompletion {
    if (this.#ep < 0) this.connect();
    // A copy a small payload's way off V8's heap (copyPayload): the addon would give an on-heap
    // one a backing store of its own (10% of a rank in a loop of small collectives across nodes).
    // A stable payload goes as it is: a buffer the caller reuses gets its backing store once.
    const copy = !stable && payload.length * DTYPE_BYTES[dtype]! <= UNSTABLE_COPY;
    const bytes = copy ? copyPayload(dtype, payload) : payload;
    const slot = this.#transport.takeSlot();
    let pending: 0 | 1;
    try {
      pending = this.#ucx.send(this.#ep, this.#transport.rank, tag, dtype, bytes, slot);
    } catch (e) {
      this.#transport.giveSlot(slot);
      throw e;
    }
    if (pending === 0) {
      this.#transport.giveSlot(slot);
      return SENT;
    }
    const c = this.#transport.awaitSend(slot, this.peer, bytes);
    if (!stable && !copy) {
      // done throws what the send failed with.
      while (!c.done) this.#transport.progress();
    }
    return c;
  }

  /** The UCX failure of this endpoint ('' while healthy): the peer died or cannot be reached. */
  failure(): string {
    return this.#ep < 0 ? '' : this.#ucx.epFailure(this.#ep);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ep < 0) return;
    this.#ucx.rkeyDestroy(this.#rkey);
    this.#ucx.epClose(this.#ep);
    this.#ep = -1;
    this.#transport.forget(this);
  }
}

/** The transports of an endpoint's lanes, from ucp_ep_print_info ("lane[0]:  1:tcp/lo.0 md[0] ..."). */
export function lanesOf(epInfo: string): string[] {
  const tls = new Set<string>();
  for (const m of epInfo.matchAll(/lane\[\d+\]:\s+\d+:([\w-]+)\//g)) tls.add(m[1]!);
  return [...tls];
}
