/**
 * Point-to-point messaging with MPI's matching rules: a receive takes the
 * first message from `source` (or any) with `tag` (or any), and messages
 * between one pair never overtake each other. Records that arrive before a
 * matching receive wait in the unexpected queue. A rank blocked in send keeps
 * draining its own incoming rings, so two ranks that send to each other before
 * they receive do not deadlock, whatever the message sizes.
 */
import { allocate, cloneValue, decodeFrom, DTYPE_MSGPACK, encode, finish } from './codec.js';
import type { TypedArray } from './types.js';
import { MprunError } from './errors.js';
import type { NodeQueues, RecordSink } from '../transports/xpmem/queue.js';
import { WAKE_MESSAGE } from '../transports/xpmem/control.js';
import type { Waiter } from './wait.js';

export const ANY_SOURCE = -1;
export const ANY_TAG = -1;

const DONE: Promise<void> = Promise.resolve();

export interface Message<T = unknown> {
  data: T;
  source: number;
  tag: number;
}

export class Messenger implements RecordSink {
  readonly #me: number;
  readonly #size: number;
  readonly #queues: NodeQueues;
  readonly #waiter: Waiter;
  readonly #eagerLimit: number;
  /** World rank of each local rank, and local rank of each world rank. */
  readonly #worldOfLocal: readonly number[];
  readonly #localOfWorld: readonly number[];
  readonly #unexpected: Message[] = [];
  #lastPolled: Message | null = null;
  #nextSource = 0;

  constructor(me: number, size: number, queues: NodeQueues, waiter: Waiter, eagerLimit: number, worldOfLocal: readonly number[], localOfWorld: readonly number[]) {
    this.#me = me;
    this.#size = size;
    this.#queues = queues;
    this.#waiter = waiter;
    this.#eagerLimit = Math.min(eagerLimit, queues.maxEager);
    this.#worldOfLocal = worldOfLocal;
    this.#localOfWorld = localOfWorld;
  }

  // RecordSink: called by NodeQueues.poll
  eager(source: number, tag: number, dtype: number, view: TypedArray, byteOffset: number, byteLength: number): void {
    this.#lastPolled = { data: decodeFrom(dtype, view, byteOffset, byteLength), source: this.#worldOfLocal[source]!, tag };
  }
  rendezvous(source: number, tag: number, dtype: number, byteLength: number, pull: (dst: TypedArray) => void): void {
    const out = allocate(dtype, byteLength);
    pull(out);
    this.#lastPolled = { data: finish(dtype, out), source: this.#worldOfLocal[source]!, tag };
  }

  #checkPeer(rank: number, what: string): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.#size) throw new RangeError(`${what} ${rank} is not a rank of this world (size ${this.#size})`);
  }

  /**
   * Not an async function: a send that completes at once (the common eager
   * case) returns one shared resolved promise and costs no extra ticks.
   */
  send(dest: number, data: unknown, tag = 0): Promise<void> {
    this.#checkPeer(dest, 'destination');
    if (!Number.isInteger(tag) || tag < 0) throw new RangeError(`tag must be a non-negative integer, not ${tag}`);
    if (dest === this.#me) {
      this.#unexpected.push({ data: cloneValue(data), source: dest, tag });
      return DONE;
    }
    const local = this.#localOfWorld[dest]!;
    const { dtype, payload } = encode(data);
    if (payload.byteLength <= this.#eagerLimit && this.#queues.trySendEager(local, tag, dtype, payload)) return DONE;
    // The packer's buffer is reused by the next encode: keep a copy of msgpack payloads.
    return this.#sendSlow(local, tag, dtype, dtype === DTYPE_MSGPACK ? payload.slice() : payload);
  }

  async #sendSlow(local: number, tag: number, dtype: number, payload: TypedArray): Promise<void> {
    const q = this.#queues;
    if (payload.byteLength <= this.#eagerLimit) {
      await this.#waiter.wait(() => q.trySendEager(local, tag, dtype, payload) || (this.#drain(), false), WAKE_MESSAGE);
      return;
    }
    let seq = q.trySendRendezvous(local, tag, dtype, payload);
    if (seq < 0) await this.#waiter.wait(() => (seq = q.trySendRendezvous(local, tag, dtype, payload)) >= 0 || (this.#drain(), false), WAKE_MESSAGE);
    if (q.rendezvousDone(local, seq)) return;
    await this.#waiter.wait(() => q.rendezvousDone(local, seq) || (this.#drain(), false), WAKE_MESSAGE);
  }

  /** Moves every waiting record into the unexpected queue. */
  #drain(): void {
    const q = this.#queues;
    for (let l = 0; l < this.#worldOfLocal.length; l++) {
      while (q.poll(l, this)) this.#unexpected.push(this.#lastPolled!);
    }
  }

  #takeUnexpected(source: number, tag: number): Message | null {
    const u = this.#unexpected;
    for (let i = 0; i < u.length; i++) {
      const m = u[i]!;
      if ((source === ANY_SOURCE || m.source === source) && (tag === ANY_TAG || m.tag === tag)) {
        u.splice(i, 1);
        return m;
      }
    }
    return null;
  }

  /** One step of matching: a message for (source, tag) if one has arrived. */
  #tryRecv(source: number, tag: number): Message | null {
    const q = this.#queues;
    if (source !== ANY_SOURCE) {
      const l = this.#localOfWorld[source]!;
      while (q.poll(l, this)) {
        const m = this.#lastPolled!;
        if (tag === ANY_TAG || m.tag === tag) return m;
        this.#unexpected.push(m);
      }
      return null;
    }
    const n = this.#worldOfLocal.length;
    for (let k = 0; k < n; k++) {
      const l = (this.#nextSource + k) % n;
      while (q.poll(l, this)) {
        const m = this.#lastPolled!;
        if (tag === ANY_TAG || m.tag === tag) {
          this.#nextSource = (l + 1) % n;
          return m;
        }
        this.#unexpected.push(m);
      }
    }
    return null;
  }

  recv<T = unknown>(source = ANY_SOURCE, tag = ANY_TAG): Promise<Message<T>> {
    if (source !== ANY_SOURCE) this.#checkPeer(source, 'source');
    if (tag !== ANY_TAG && (!Number.isInteger(tag) || tag < 0)) throw new RangeError(`tag must be a non-negative integer or ANY_TAG, not ${tag}`);
    let m = this.#unexpected.length > 0 ? this.#takeUnexpected(source, tag) : null;
    if (m === null) m = this.#tryRecv(source, tag);
    if (m !== null) return Promise.resolve(m as Message<T>);
    if (source === this.#me) return Promise.reject(new MprunError('ERR_MPRUN_ARG', `rank ${this.#me} waits for a message from itself that was never sent`));
    return this.#recvSlow<T>(source, tag);
  }

  async #recvSlow<T>(source: number, tag: number): Promise<Message<T>> {
    let m: Message | null = null;
    // Another operation blocked meanwhile (a send) may drain our match into
    // the unexpected queue, so look there too.
    await this.#waiter.wait(() => (m = (this.#unexpected.length > 0 ? this.#takeUnexpected(source, tag) : null) ?? this.#tryRecv(source, tag)) !== null, WAKE_MESSAGE);
    return m as unknown as Message<T>;
  }

  /** Whether a matching message has arrived (MPI_Iprobe), without taking it. */
  probe(source = ANY_SOURCE, tag = ANY_TAG): { source: number; tag: number } | null {
    this.#drain();
    const m = this.#unexpected.find((u) => (source === ANY_SOURCE || u.source === source) && (tag === ANY_TAG || u.tag === tag));
    return m === undefined ? null : { source: m.source, tag: m.tag };
  }
}
