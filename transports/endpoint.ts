/**
 * The one interface every transport implements (UCX's uct ops table, Open
 * MPI's smsc/btl modules): a rank reaches each peer through one Endpoint,
 * bound once at init by the selector (runtime/select.ts), and World, Team and
 * the collectives call the endpoint, never a concrete transport. What an
 * endpoint cannot do it says in its capabilities, which are true for the
 * backend actually bound (a conformance test runs every advertised operation
 * over every endpoint implementation).
 *
 * Offsets are byte offsets into the peer's symmetric heap; the World has
 * checked them against the allocation before a byte moves. Element types of
 * atomics and messages are the codec's dtype codes (core/codec.ts).
 */
import type { TypedArray } from '../core/types.js';

/** Atomic operations, by the codes the DSM wire carries too (transports/atomics.ts applies them to memory). */
export const AtomicOp = { FETCH_ADD: 1, COMPARE_SWAP: 2, SWAP: 3, FETCH: 4, SET: 5 } as const;
export type AtomicOpCode = (typeof AtomicOp)[keyof typeof AtomicOp];

/** What a bound endpoint really does, with units. */
export interface EndpointCaps {
  /** map() returns the peer's heap: world.ptr() and direct loads and stores work. */
  readonly canMap: boolean;
  /** atomic() works (false: it throws ERR_MPRUN_UNSUPPORTED, e.g. copies-only CMA). */
  readonly atomics: boolean;
  /** A put is complete at the target when put() returns (no flush needed to see it). */
  readonly putCompleteOnReturn: boolean;
  /** Atomics and gets complete while the target computes (hardware, a serving agent or a progress thread). */
  readonly progressWithoutTarget: boolean;
  /** One-way latency of a small operation, seconds (measured on the reference machine; README). */
  readonly latency: number;
  /** Bandwidth of one stream, bytes per second. */
  readonly bandwidth: number;
}

/**
 * A send in flight: poll `done` (the transport's progress completes it); the
 * payload is reusable once done. A send that failed (its peer unreachable)
 * throws its error from `done`: a send is never reported as made when it was not.
 */
export interface SendCompletion {
  readonly done: boolean;
}

/** A send that completed at once. */
export const SENT: SendCompletion = Object.freeze({ done: true });

/** Where arriving messages go (the rank's matching engine, runtime/p2p.ts). */
export interface MessageSink {
  /**
   * A message from world rank `source` (`dtype` as the codec's): `payload` is
   * valid only during the call (the sink copies or decodes it).
   */
  arrived(source: number, tag: number, dtype: number, payload: TypedArray): void;
}

export interface Endpoint {
  /** The transport and its backend as mprun info and MPRUN_DEBUG name it: self, xpmem/memfd, dsm, ucx/tcp. */
  readonly name: string;
  readonly caps: EndpointCaps;
  /** The peer's symmetric heap mapped here, or null when it cannot be mapped (caps.canMap false). */
  map(): ArrayBuffer | null;
  /** The peer's collective scratch mapped here (the shared-memory collectives read it), or null. */
  mapScratch(): ArrayBuffer | null;
  /** Copies `src` (any typed array: its bytes) into the peer's heap at byte `offset`; `src` may be reused on return. */
  put(offset: number, src: TypedArray): void;
  /**
   * As put, but `src` may be read until the next flush completes (OpenSHMEM's
   * put_nbi, MPI_Put's rule), so that successive puts overlap. Endpoints
   * without it get put().
   */
  putNbi?(offset: number, src: TypedArray): void;
  /** Copies the peer's heap bytes [offset, offset + dst.byteLength) into `dst`: at once (undefined) or when the promise resolves. */
  get(offset: number, dst: TypedArray): Promise<void> | undefined;
  /**
   * An atomic on the peer's element of type `dtype` at `offset`; resolves to
   * the element's old value. `a` is the operand (the expected value for
   * COMPARE_SWAP), `b` the desired value of COMPARE_SWAP.
   */
  atomic(op: AtomicOpCode, dtype: number, offset: number, a: number | bigint, b: number | bigint): Promise<number | bigint> | number | bigint;
  /**
   * Orders the puts issued on this endpoint before it before those issued
   * after it, at the target (OpenSHMEM fence, per peer); blocking when it must
   * complete some. Endpoints whose puts land in order have none.
   */
  fence?(): void;
  /** Completes every put issued on this endpoint at the target (OpenSHMEM quiet, per peer). */
  flush(): Promise<void> | undefined;
  /**
   * Sends a message (the codec's encoding: a typed array's own elements, or
   * msgpack bytes). With `stable` the payload stays unchanged until the
   * completion is done (a user's array, as MPI_Send's buffer); else the
   * endpoint copies what it keeps past the call.
   */
  send(tag: number, dtype: number, payload: TypedArray, stable: boolean): SendCompletion;
  /**
   * An endpoint connected on first use (another node's rank): connect now,
   * blocking, for a synchronous call that cannot wait for the event loop, or
   * throw saying why it cannot (`what` names the call). Others have none.
   */
  connectSync?(what: () => string): void;
  /** Lets go of the peer (detach its memory, close its connection). */
  close(): void;
}

/**
 * A transport as one rank runs it (a UCP worker, the node's shared-memory
 * queues, the connections to node agents): it makes endpoints and is
 * progressed by the rank's progress engine, which every wait drives.
 */
export interface TransportInstance {
  readonly name: string;
  /** Polls for arrivals (into the sink) and advances sends; whether anything completed. */
  progress(): boolean;
  /** Whether operations are in flight that only progress() completes. */
  busy(): boolean;
  close(): void;
}

/**
 * Flushes every endpoint of `endpoints` and waits for `pending` too (an
 * earlier quiet's flushes): settles once every flush has, rejecting then with
 * the first failure. A flush that throws at once neither stops the others nor
 * leaves their later rejections unhandled (a quiet returning while puts were
 * still on their way, or a rank killed by a rejection nobody awaited).
 * undefined: nothing to wait for.
 */
export function flushAll(endpoints: Iterable<Endpoint>, pending: Promise<unknown> | null = null): Promise<unknown> | undefined {
  const waits: Promise<unknown>[] = pending === null ? [] : [pending];
  let failure: { error: unknown } | null = null;
  for (const ep of endpoints) {
    try {
      const f = ep.flush();
      if (f !== undefined) waits.push(f);
    } catch (e) {
      failure ??= { error: e };
    }
  }
  if (failure === null && waits.length <= 1) return waits[0];
  return Promise.allSettled(waits).then((settled) => {
    if (failure !== null) throw failure.error;
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
  });
}
