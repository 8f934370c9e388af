/**
 * The sending side of the node's message queues, as one rank runs it: a
 * message to a node peer goes straight into the peer's queue when nothing
 * to that peer waits before it and it fits (the common eager case, no
 * allocation); else it waits, in call order per destination, and progress()
 * posts what fits, large messages as fragments. Receiving is the rank's own
 * queue, polled by its matching engine (runtime/p2p.ts) through NodeQueues.
 */
import { copyPayload, DTYPE_BYTES } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import { SENT, type SendCompletion, type TransportInstance } from '../endpoint.js';
import type { NodeQueues } from './queue.js';

interface PendingSend {
  tag: number;
  dtype: number;
  payload: TypedArray;
  /** Bytes posted so far (fragments). */
  offset: number;
  done: boolean;
}

export class ShmMessages implements TransportInstance {
  readonly name = 'shm';
  readonly queues: NodeQueues;
  readonly #eagerLimit: number;
  /** Per local destination, sends waiting to post, in call order. */
  readonly #sends: PendingSend[][];
  #pending = 0;
  #stuck = false;

  constructor(queues: NodeQueues, eagerLimit: number, nlocal: number) {
    this.queues = queues;
    this.#eagerLimit = Math.min(eagerLimit, queues.maxEager);
    this.#sends = Array.from({ length: nlocal }, () => []);
  }

  /** Sends to local rank `local`; see Endpoint.send. */
  send(local: number, tag: number, dtype: number, payload: TypedArray, stable: boolean): SendCompletion {
    const queue = this.#sends[local]!;
    if (queue.length === 0 && payload.length * DTYPE_BYTES[dtype]! <= this.#eagerLimit && this.queues.trySendEager(local, tag, dtype, payload)) return SENT;
    const s: PendingSend = { tag, dtype, payload: stable ? payload : copyPayload(dtype, payload), offset: 0, done: false };
    queue.push(s);
    this.#pending++;
    this.#advance(local);
    return s.done ? SENT : s;
  }

  /** Posts what it can of the sends queued for `local`; whether one completed. */
  #advance(local: number): boolean {
    const queue = this.#sends[local]!;
    let completed = false;
    while (queue.length > 0) {
      const s = queue[0]!;
      if (!this.queues.tryPost(local, s, this.#eagerLimit)) break;
      queue.shift();
      this.#pending--;
      s.done = true;
      completed = true;
    }
    return completed;
  }

  progress(): boolean {
    this.#stuck = false;
    if (this.#pending === 0) return false;
    let completed = false;
    for (let l = 0; l < this.#sends.length; l++) {
      if (this.#sends[l]!.length === 0) continue;
      if (this.#advance(l)) completed = true;
      if (this.#sends[l]!.length > 0) this.#stuck = true;
    }
    return completed;
  }

  /** After progress(): a peer's queue is full. Its owner may be blocked sending to us: drain ours. */
  get stuck(): boolean {
    return this.#stuck;
  }

  busy(): boolean {
    return this.#pending > 0;
  }

  close(): void {
    for (const q of this.#sends) q.length = 0;
    this.#pending = 0;
  }
}
