/**
 * A peer on another node, reached through the connection to its node's
 * agent (one per node, shared by its ranks): puts and messages are written
 * at once, gets, atomics and flushes wait for the
 * agent's reply. The agent serves them on the peer's heap while the peer
 * computes.
 */
import type { TypedArray } from '../../core/types.js';
import { SENT, type AtomicOpCode, type Endpoint, type EndpointCaps, type SendCompletion } from '../endpoint.js';
import { isBigDtype } from '../atomics.js';
import type { AgentLink } from './client.js';

/** Measured across a veth pair on the reference machine (README: cross-node table). */
const CAPS: EndpointCaps = { canMap: false, atomics: true, putCompleteOnReturn: false, progressWithoutTarget: true, latency: 4e-5, bandwidth: 1.5e9 };

const bytesOf = (a: TypedArray): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export class DsmEndpoint implements Endpoint {
  static readonly caps = CAPS;
  readonly name = 'dsm';
  readonly caps = CAPS;
  readonly #link: AgentLink;
  readonly #peer: number;
  readonly #me: number;

  constructor(link: AgentLink, peer: number, me: number) {
    this.#link = link;
    this.#peer = peer;
    this.#me = me;
  }

  map(): null {
    return null;
  }

  mapScratch(): null {
    return null;
  }

  put(offset: number, src: TypedArray): void {
    this.#link.heapPut(this.#peer, offset, bytesOf(src));
  }

  get(offset: number, dst: TypedArray): Promise<void> {
    return this.#link.heapGet(this.#peer, offset, bytesOf(dst));
  }

  atomic(op: AtomicOpCode, dtype: number, offset: number, a: number | bigint, b: number | bigint): Promise<number | bigint> {
    return this.#link.heapAtomic(this.#peer, offset, op, dtype, a, b, isBigDtype(dtype));
  }

  /** The link's puts (to every rank of that node) have landed: one FLUSH covers the node. */
  flush(): Promise<void> {
    return this.#link.flush();
  }

  /**
   * The agent relays it into the peer's queue. Written to the socket from the
   * payload itself: done at once when the kernel takes it all; else a stable
   * payload is done once the rest is written, and another is copied.
   */
  send(tag: number, dtype: number, payload: TypedArray, stable: boolean): SendCompletion {
    const mark = this.#link.message(this.#peer, this.#me, tag, dtype, bytesOf(payload), stable);
    if (mark === null) return SENT;
    const link = this.#link;
    return {
      get done(): boolean {
        return link.written >= mark;
      },
    };
  }

  /** The link is the node's, closed with the rank's transports. */
  close(): void {}
}
