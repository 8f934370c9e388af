/**
 * The sending side of point-to-point messaging: each destination's endpoint
 * (transports/endpoint.ts) carries the message. A send the endpoint cannot
 * finish at once (a full queue, a large message streaming as fragments)
 * completes as its transport progresses, which every wait of the rank drives
 * (Messenger.progress). Apart from the matching engine (p2p.ts): a send
 * matches nothing, and sends to one destination post in call order.
 */
import { DTYPE_MSGPACK, encode } from '../core/codec.js';
import { MprunError } from '../core/errors.js';
import type { Endpoint, SendCompletion } from '../transports/endpoint.js';
import { WAKE_MESSAGE } from '../transports/shm/control.js';
import { checkSend, describeTag } from './matching.js';
import type { Waiter } from './wait.js';

const DONE: Promise<void> = Promise.resolve();
/** What a synchronous send that cannot reach its destination's node yet is called in the error. */
const SEND_SYNC = (): string => 'sendSync';

export class Sender {
  readonly #size: number;
  /** One per world rank (this rank's own included). */
  readonly #endpoints: readonly Endpoint[];
  readonly #waiter: Waiter;

  constructor(size: number, endpoints: readonly Endpoint[], waiter: Waiter) {
    this.#size = size;
    this.#endpoints = endpoints;
    this.#waiter = waiter;
  }

  /**
   * Not an async function: a send that posts at once (the common eager case)
   * returns one shared resolved promise and costs no extra ticks. It resolves
   * when `data` may be reused: once every byte is in the ring.
   */
  send(dest: number, data: unknown, tag = 0): Promise<void> {
    checkSend(dest, tag, this.#size);
    return this.#send(dest, data, tag);
  }

  /** As send, blocking this thread until `data` may be reused (an eager message: once it is in the ring). */
  sendSync(dest: number, data: unknown, tag = 0): void {
    checkSend(dest, tag, this.#size);
    this.#waiter.checkSyncCall('sendSync');
    // Another node's rank met for the first time: connected before the message is queued (nothing is, if it cannot be).
    this.#endpoints[dest]!.connectSync?.(SEND_SYNC);
    const s = this.#start(dest, data, tag, false);
    if (!s.done) this.#waiter.blockUntil(() => s.done, WAKE_MESSAGE, () => `sendSync to rank ${dest}${describeTag(tag)}`);
  }

  /** Sends one of the runtime's own messages (tag >= INTERNAL_TAG); the data may be reused at once. */
  sendInternal(dest: number, data: unknown, tag: number): void {
    // Nobody waits for it: a send still completing when the world is finalized (the last
    // barrier's message, over UCX) ends there quietly; any other failure stays loud.
    this.#send(dest, data, tag, true).catch((e: unknown) => {
      if (!(e instanceof MprunError && e.code === 'ERR_MPRUN_FINALIZED')) throw e;
    });
  }

  #send(dest: number, data: unknown, tag: number, copy = false): Promise<void> {
    const s = this.#start(dest, data, tag, copy);
    return s.done ? DONE : this.#waiter.wait(() => s.done, WAKE_MESSAGE, () => `send to rank ${dest}${describeTag(tag)}`);
  }

  /** Hands the message to the endpoint of `dest`; `data` may be reused once the completion is done. */
  #start(dest: number, data: unknown, tag: number, copy: boolean): SendCompletion {
    const { dtype, payload } = encode(data);
    // The packer's buffer is reused by the next encode: a msgpack payload is not stable (nor an internal one).
    return this.#endpoints[dest]!.send(tag, dtype, payload, dtype !== DTYPE_MSGPACK && !copy);
  }
}
