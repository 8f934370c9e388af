/**
 * Point-to-point messaging with MPI's matching rules, driven by one progress
 * engine per rank.
 *
 * Matching: a message goes to the earliest posted receive it matches (source
 * or ANY_SOURCE, tag or ANY_TAG); one that arrives before any matching
 * receive waits in the unexpected queue, which a new receive searches first.
 * Messages between one pair never overtake each other: sends to one
 * destination post in call order (send.ts, through its endpoint). A large
 * message is matched at its first fragment, which claims the receive.
 *
 * Progress: pending sends and receives that cannot match at once are pending
 * operations. Every wait of this rank, whatever it waits for, drives all of
 * them (progress()), so concurrent operations never starve each other, and a
 * rank whose send finds a peer's queue full drains its own, so ranks that
 * send to each other before they receive do not deadlock.
 *
 * Receiving: messages from this node (and from other nodes' ranks through
 * this node's agent, which relays them) come through the rank's one queue in
 * the node's control segment (transports/shm/queue.ts), polled here as a
 * RecordSink; messages of transports that deliver themselves (and to itself)
 * arrive through arrived() (a MessageSink). One connection, and the agent's
 * posting in order, keep each pair in order.
 *
 * Tags from INTERNAL_TAG up carry the runtime's own traffic (collectives
 * across nodes): they never match a user's receive, ANY_TAG included, and wait
 * in their own queues for takeInternal().
 */
import { allocate, decodeFrom, DTYPE_MSGPACK, dtypeOf, finish, moveCtor } from '../core/codec.js';
import { MprunError } from '../core/errors.js';
import { native } from '../native/index.js';
import type { TypedArray } from '../core/types.js';
import { RECV_EMPTY, RECV_NOT_THIS, type NodeQueues, type RecordSink } from '../transports/shm/queue.js';
import { WAKE_MESSAGE } from '../transports/shm/control.js';
import type { ShmMessages } from '../transports/shm/messages.js';
import type { Endpoint, MessageSink, TransportInstance } from '../transports/endpoint.js';
import { ANY_SOURCE, ANY_TAG, INTERNAL_TAG, InternalMessages, checkRecv, describeRecv, filled, intoResult, landedIn, landing, matches, matchesPair, type Message, type PendingRecv } from './matching.js';
import { Sender } from './send.js';
import type { Waiter } from './wait.js';

export { ANY_SOURCE, ANY_TAG, INTERNAL_TAG, type Message } from './matching.js';

/** What the matching engine works with: the rank's inbox, its endpoints, and the transports that carry its messages. */
export interface MessagingParts {
  size: number;
  /** The rank's own queue (its node peers and its node agent write into it). */
  inbox: NodeQueues;
  waiter: Waiter;
  /** One per world rank (this rank's own included). */
  endpoints: readonly Endpoint[];
  /** World rank of each local rank. */
  worldOfLocal: readonly number[];
  /** The node queues' sending side (when its sends are stuck, this rank drains its own queue). */
  shm: ShmMessages;
  /** Other transports whose progress completes sends or delivers messages. */
  others: readonly TransportInstance[];
  /** Nanoseconds a receive polls synchronously before it is posted and awaited. */
  recvPollNs: number;
  /** Nanoseconds the native receive polls our queue when no other transport delivers messages (default: recvPollNs). */
  recvFastPollNs?: number;
}

export class Messenger implements RecordSink, MessageSink {
  readonly #size: number;
  /** The sending side (send.ts). */
  readonly sends: Sender;
  readonly #queues: NodeQueues;
  readonly #waiter: Waiter;
  readonly #shm: ShmMessages;
  readonly #others: readonly TransportInstance[];
  /** World rank of each local rank. */
  readonly #worldOfLocal: readonly number[];
  readonly #unexpected: Message[] = [];
  readonly #internal = new InternalMessages();
  /** Posted receives not yet matched, in posting order. */
  readonly #recvs: PendingRecv[] = [];
  /** Per local source: the large message being reassembled from its fragments, and the receive it matched. */
  readonly #assembling: Array<{ from: number; tag: number; dtype: number; dst: TypedArray; filled: number; claim: PendingRecv | null } | null>;
  #lastPolled: Message | null = null;
  /** The last poll completed a posted receive claimed by a large message. */
  #claimDone = false;
  /** The fast path's receive, claimed by a large message whose first fragment it polled. */
  #fastClaim: PendingRecv | null = null;
  /** The recvInto being served by the synchronous fast path, if any (no allocation per call). */
  #fastInto: TypedArray | null = null;
  #fastSource = 0;
  #fastTag = 0;
  /** The message the last #receive returned at once, if it did. */
  #lastReady: Message | null = null;
  /** Nanoseconds a receive polls synchronously before it is posted and awaited. */
  readonly #pollNs: number;
  readonly #fastPollNs: number;
  /** The native receive's source and tag. */
  readonly #recvOut = new Int32Array(2);

  constructor(p: MessagingParts) {
    this.#pollNs = p.recvPollNs;
    // The native receive watches our queue only: with a transport that delivers messages itself
    // (UCX), poll no longer than the waits would before they drive it.
    this.#fastPollNs = p.others.length === 0 ? (p.recvFastPollNs ?? p.recvPollNs) : p.recvPollNs;
    this.#size = p.size;
    this.#queues = p.inbox;
    this.#waiter = p.waiter;
    this.sends = new Sender(p.size, p.endpoints, p.waiter);
    this.#shm = p.shm;
    this.#others = p.others;
    this.#worldOfLocal = p.worldOfLocal;
    this.#assembling = [...p.worldOfLocal, -1].map(() => null);
    p.waiter.attach(() => this.progress(), () => this.busy());
    p.inbox.worldRanks(p.worldOfLocal);
  }

  // --- MessageSink: messages transports deliver themselves ------------------------
  arrived(source: number, tag: number, dtype: number, payload: TypedArray): void {
    const Ctor = moveCtor(dtype);
    // As the payload's own element type (a copy when it came as bytes of another type).
    const view = payload.constructor === Ctor ? payload : new Ctor(payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.byteLength) as ArrayBuffer);
    const into = this.#destination(source, tag, dtype, view.byteLength);
    let data: unknown;
    if (into === null) data = decodeFrom(dtype, view, 0, view.byteLength);
    else {
      (into as Float64Array).set(view as unknown as Float64Array);
      data = into;
    }
    this.#arrived({ data, source, tag });
  }

  // --- RecordSink: called by NodeQueues.poll ---------------------------------
  eager(ring: number, origin: number, tag: number, dtype: number, view: TypedArray, byteOffset: number, byteLength: number): void {
    const from = origin >= 0 ? origin : this.#worldOfLocal[ring]!;
    const into = this.#destination(from, tag, dtype, byteLength);
    let data: unknown;
    if (into === null) data = decodeFrom(dtype, view, byteOffset, byteLength);
    else {
      const bpe = view.BYTES_PER_ELEMENT;
      (into as Float64Array).set((view as Float64Array).subarray(byteOffset / bpe, (byteOffset + byteLength) / bpe));
      data = into;
    }
    this.#lastPolled = { data, source: from, tag };
  }
  /**
   * A large message is matched at its first fragment, as MPI matches on the envelope: the receive it matches is
   * claimed, so that no message arriving between its fragments takes that receive or lands in its buffer.
   */
  first(ring: number, origin: number, tag: number, dtype: number, totalBytes: number, view: TypedArray, byteOffset: number, byteLength: number): void {
    const from = origin >= 0 ? origin : this.#worldOfLocal[ring]!;
    // Its memory first (the receive #claim takes has that buffer): one that finds none claims nothing.
    const dst = this.#destination(from, tag, dtype, totalBytes) ?? allocate(dtype, totalBytes);
    this.#assembling[ring] = { from, tag, dtype, dst, filled: 0, claim: this.#claim(from, tag) };
    this.next(ring, view, byteOffset, byteLength);
  }

  /** The receive a message from `source` with `tag` matches now (the fast path's, or the earliest posted), claimed for it; or null. */
  #claim(source: number, tag: number): PendingRecv | null {
    if (tag >= INTERNAL_TAG) return null;
    if (this.#fastInto !== null) {
      if (this.#fastClaim !== null || !matchesPair(source, tag, this.#fastSource, this.#fastTag)) return null;
      return (this.#fastClaim = { source: this.#fastSource, tag: this.#fastTag, message: null, into: this.#fastInto, claimed: true });
    }
    for (const r of this.#recvs) {
      if (!r.claimed && matchesPair(source, tag, r.source, r.tag)) {
        r.claimed = true;
        return r;
      }
    }
    return null;
  }

  /**
   * Where a message from `source` with `tag` should land: the buffer of the
   * receive it will match, if that is a recvInto whose buffer has the
   * message's type and room for it; else null (fresh memory).
   */
  #destination(source: number, tag: number, dtype: number, bytes: number): TypedArray | null {
    let into: TypedArray | null = null;
    if (tag >= INTERNAL_TAG) return null;
    if (this.#fastInto !== null) {
      if (this.#fastClaim === null && matchesPair(source, tag, this.#fastSource, this.#fastTag)) into = this.#fastInto;
    } else {
      for (const r of this.#recvs) {
        if (!r.claimed && matchesPair(source, tag, r.source, r.tag)) {
          into = r.into;
          break;
        }
      }
    }
    return landing(into, dtype, bytes);
  }
  next(source: number, view: TypedArray, byteOffset: number, byteLength: number): void {
    const a = this.#assembling[source];
    if (a === undefined || a === null) throw new MprunError('ERR_MPRUN_PROTOCOL', `a message fragment from local rank ${source} without its start`);
    const bpe = view.BYTES_PER_ELEMENT;
    (a.dst as Float64Array).set((view as Float64Array).subarray(byteOffset / bpe, (byteOffset + byteLength) / bpe), a.filled / bpe);
    a.filled += byteLength;
    if (a.filled !== a.dst.byteLength) return;
    this.#assembling[source] = null;
    const m: Message = { data: finish(a.dtype, a.dst), source: a.from, tag: a.tag };
    const c = a.claim;
    if (c === null || c === this.#fastClaim) {
      // Unclaimed (a withdrawn receive's claim is dropped: #release), or the fast path's: #tryRecv returns it.
      if (c !== null) c.message = m;
      this.#lastPolled = m;
      return;
    }
    this.#recvs.splice(this.#recvs.indexOf(c), 1);
    c.message = m;
    this.#claimDone = true;
  }

  // --- receive -------------------------------------------------------------------

  recv<T = unknown>(source = ANY_SOURCE, tag = ANY_TAG): Promise<Message<T>> {
    return this.#receive(source, tag, null) as Promise<Message<T>>;
  }

  /** As recv, blocking this thread until the message is here. */
  recvSync<T = unknown>(source = ANY_SOURCE, tag = ANY_TAG): Message<T> {
    this.#waiter.checkSyncCall('recvSync');
    return this.#receiveSync(source, tag, null) as Message<T>;
  }

  /**
   * Receives into `into` (MPI_Recv): a message of the same typed-array type
   * lands in it with no allocation; `data` is the filled prefix (`into` itself when filled). A message of
   * another type, or longer than `into`, is taken and reported as an error.
   */
  recvInto<T extends TypedArray>(into: T, source = ANY_SOURCE, tag = ANY_TAG): Promise<Message<T>> {
    const dtype = dtypeOf(into);
    if (dtype === DTYPE_MSGPACK) throw new TypeError('recvInto needs a typed array to receive into');
    const n = this.#nativeRecv(into, dtype, source, tag, 0);
    if (n >= 0) return Promise.resolve(this.#nativeMessage(into, n, dtype));
    const got = this.#receive(source, tag, into, n === RECV_EMPTY);
    // Already there, in our buffer: no further promise.
    if (this.#lastReady !== null && landedIn(this.#lastReady, into)) return got as Promise<Message<T>>;
    return got.then((m) => intoResult(m, into));
  }

  /** As recvInto, blocking this thread until the message is here. */
  recvIntoSync<T extends TypedArray>(into: T, source = ANY_SOURCE, tag = ANY_TAG): Message<T> {
    const dtype = dtypeOf(into);
    if (dtype === DTYPE_MSGPACK) throw new TypeError('recvIntoSync needs a typed array to receive into');
    this.#waiter.checkSyncCall('recvIntoSync');
    const n = this.#nativeRecv(into, dtype, source, tag, this.#waiter.syncDozeNs());
    if (n >= 0) return this.#nativeMessage(into, n, dtype);
    return intoResult(this.#receiveSync(source, tag, into, n === RECV_EMPTY), into);
  }

  /**
   * The common case in native code (native/queue.cc): with no receive posted
   * and no send in flight before it, the awaited message is the next record of
   * our queue. Its bytes, or RECV_EMPTY (nothing came while it polled, and
   * slept up to `dozeNs`) or RECV_NOT_THIS (something else is there, or the
   * case does not apply).
   */
  #nativeRecv(into: TypedArray, dtype: number, source: number, tag: number, dozeNs: number): number {
    if (this.#unexpected.length !== 0 || this.#recvs.length !== 0 || this.#sending()) return RECV_NOT_THIS;
    checkRecv(source, tag, this.#size);
    return this.#queues.recvInto(into, dtype, source, tag, this.#fastPollNs, dozeNs, this.#recvOut);
  }

  /** The message #nativeRecv took: `n` bytes in `into`. */
  #nativeMessage<T extends TypedArray>(into: T, n: number, dtype: number): Message<T> {
    // Not kept in #lastReady (#receive sets it before it is read): storing a new object in an
    // old one takes V8's write barrier's slow path, on the critical hop of every message.
    const out = this.#recvOut;
    return { data: filled(into, n, dtype), source: out[0]!, tag: out[1]! };
  }

  /** `polled`: the native fast path has just polled our queue for a while, found it empty: look once more, then wait. */
  #receive(source: number, tag: number, into: TypedArray | null, polled = false): Promise<Message> {
    const m = this.#match(source, tag, into, polled);
    if (m !== null) return Promise.resolve(m);
    const r = this.#post(source, tag, into);
    return this.#waiter.wait(() => r.message !== null, WAKE_MESSAGE, () => describeRecv(r)).then(
      () => r.message!,
      (e: unknown) => {
        this.#unpost(r);
        throw e;
      },
    );
  }

  /** As #receive, blocking this thread. */
  #receiveSync(source: number, tag: number, into: TypedArray | null, polled = false): Message {
    const m = this.#match(source, tag, into, polled);
    if (m !== null) return m;
    const r = this.#post(source, tag, into);
    try {
      this.#waiter.blockUntil(() => r.message !== null, WAKE_MESSAGE, () => `${describeRecv(r)}, synchronous`);
    } catch (e) {
      this.#unpost(r);
      throw e;
    }
    return r.message!;
  }

  /** The message a receive of (source, tag) takes now, if one is here or lands while it polls briefly; else null. */
  #match(source: number, tag: number, into: TypedArray | null, polled: boolean): Message | null {
    checkRecv(source, tag, this.#size);
    let m = this.#unexpected.length > 0 ? this.#takeUnexpected(source, tag) : null;
    // Straight from the rings, unless an earlier receive is still waiting (it
    // has first claim). Poll for a few microseconds before going async: a
    // reply already in flight lands then, and a bounded poll cannot deadlock.
    if (m === null && this.#recvs.length === 0 && !this.#sending()) {
      if (into !== null) {
        this.#fastInto = into;
        this.#fastSource = source;
        this.#fastTag = tag;
      }
      try {
        m = this.#tryRecv(source, tag);
        if (m === null && this.#pollNs > 0 && !polled) {
          const n = native();
          const until = n.nowMs() + this.#pollNs / 1e6;
          for (let i = 1; m === null; i++) {
            m = this.#tryRecv(source, tag);
            if ((i & 15) === 0 && n.nowMs() > until) break;
          }
        }
      } catch (e) {
        this.#dropFastClaim(); // no receive is posted to take it
        throw e;
      } finally {
        this.#fastInto = null;
      }
    }
    this.#lastReady = m;
    return m;
  }

  /** The fast path's claim, for a receive that is not posted after all: its message arrives unclaimed. */
  #dropFastClaim(): void {
    if (this.#fastClaim !== null) this.#release(this.#fastClaim);
    this.#fastClaim = null;
  }

  /** The assembly claimed by withdrawn receive `c` goes on unclaimed, in memory of its own (not `c`'s buffer, the caller's again). */
  #release(c: PendingRecv): void {
    for (const a of this.#assembling) {
      if (a === null || a.claim !== c) continue;
      a.claim = null;
      if (c.into === null || a.dst.buffer !== c.into.buffer) continue;
      const fresh = allocate(a.dtype, a.dst.byteLength);
      new Uint8Array(fresh.buffer, fresh.byteOffset, a.filled).set(new Uint8Array(a.dst.buffer, a.dst.byteOffset, a.filled));
      a.dst = fresh;
    }
  }

  /** Posts a receive that the progress engine completes when its message arrives. */
  #post(source: number, tag: number, into: TypedArray | null): PendingRecv {
    // The fast path's receive, claimed by a large message still arriving: posted as it is.
    const c = this.#fastClaim;
    this.#fastClaim = null;
    const r: PendingRecv = c ?? { source, tag, message: null, into, claimed: false };
    this.#recvs.push(r);
    return r;
  }

  /** Withdraws a receive whose wait failed (the job is aborting, the world finalized). */
  #unpost(r: PendingRecv): void {
    const i = this.#recvs.indexOf(r);
    if (i >= 0) this.#recvs.splice(i, 1);
    if (r.claimed) this.#release(r);
  }

  /** Whether a matching message has arrived (MPI_Iprobe), without taking it. */
  probe(source = ANY_SOURCE, tag = ANY_TAG): { source: number; tag: number } | null {
    this.#drainAll();
    const m = this.#unexpected.find((u) => matches(u, source, tag));
    return m === undefined ? null : { source: m.source, tag: m.tag };
  }

  /** A message that arrived: to the earliest posted receive it matches, else the unexpected queue. */
  #arrived(m: Message): boolean {
    if (m.tag >= INTERNAL_TAG) {
      this.#internal.stash(m);
      return false;
    }
    const recvs = this.#recvs;
    for (let i = 0; i < recvs.length; i++) {
      const r = recvs[i]!;
      if (!r.claimed && matches(m, r.source, r.tag)) {
        recvs.splice(i, 1);
        r.message = m;
        return true;
      }
    }
    this.#unexpected.push(m);
    return false;
  }

  /** Takes one record from our queue; #lastPolled is the message it completed, if any (not an internal one). */
  #poll(): boolean {
    this.#lastPolled = null;
    this.#claimDone = false;
    if (!this.#queues.poll(this)) return false;
    const m = this.#lastPolled as Message | null;
    if (m !== null && m.tag >= INTERNAL_TAG) {
      this.#internal.stash(m);
      this.#lastPolled = null;
    }
    return true;
  }

  /** Sends one of the runtime's own messages (Sender.sendInternal; the collectives across nodes). */
  sendInternal(dest: number, data: unknown, tag: number): void {
    this.sends.sendInternal(dest, data, tag);
  }

  /** Takes the first internal message from `source` with `tag`, polling the rings first; null if none yet. */
  takeInternal(source: number, tag: number): Message | null {
    const m = this.#internal.take(source, tag);
    if (m !== null) return m;
    this.#drainAll();
    return this.#internal.take(source, tag);
  }

  /**
   * Everything waiting in our queue goes to posted receives or the unexpected
   * queue; with `untilServed`, it stops once the last posted receive has
   * completed: the records after it stay in our queue for the receive the
   * program posts next, whose buffer they then land in. Draining on made a
   * large message that follows (fragments already in the queue) unexpected: a
   * fresh array for it, and a second copy into the next recvInto's buffer.
   */
  #drainAll(untilServed = false): boolean {
    let completed = false;
    while (this.#poll()) {
      if (this.#claimDone || (this.#lastPolled !== null && this.#arrived(this.#lastPolled))) {
        completed = true;
        if (untilServed && this.#recvs.length === 0) break;
      }
    }
    return completed;
  }

  #takeUnexpected(source: number, tag: number): Message | null {
    const u = this.#unexpected;
    for (let i = 0; i < u.length; i++) {
      if (matches(u[i]!, source, tag)) return u.splice(i, 1)[0]!;
    }
    return null;
  }

  /** The fast path of a receive with nothing posted before it: poll our queue for a match. */
  #tryRecv(source: number, tag: number): Message | null {
    while (this.#poll()) {
      const m = this.#lastPolled;
      if (m === null) continue;
      const c = this.#fastClaim;
      // Claimed by a large message: that one, once whole, and no other.
      if (c === null ? matchesPair(m.source, m.tag, source, tag) : c.message === m) {
        this.#fastClaim = null;
        return m;
      }
      this.#unexpected.push(m);
    }
    return null;
  }

  // --- progress --------------------------------------------------------------------

  /** Whether sends are in flight. */
  #sending(): boolean {
    if (this.#shm.busy()) return true;
    for (const t of this.#others) if (t.busy()) return true;
    return false;
  }

  /** Whether operations are pending (a waiting rank must then wake for messages too). */
  busy(): boolean {
    return this.#recvs.length > 0 || this.#sending();
  }

  /**
   * Drives every pending operation as far as it can go now; returns whether
   * one completed. Called by every wait of this rank.
   */
  progress(): boolean {
    let completed = false;
    if (this.#shm.busy()) {
      if (this.#shm.progress()) completed = true;
      // A full queue: drain our own, so that a peer blocked sending to us moves too.
      if (this.#shm.stuck && this.#drainAll()) completed = true;
    }
    for (const t of this.#others) if (t.progress()) completed = true;
    if (this.#recvs.length > 0 && this.#drainAll(true)) completed = true;
    return completed;
  }
}
