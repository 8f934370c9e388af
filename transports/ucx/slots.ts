/**
 * Operation slots shared with native/ucx.cc. An operation that may complete
 * later (get, atomic, flush, send) takes a slot; native code writes its status
 * (1 in progress, 0 done, < 0 a ucs_status_t) and an atomic's old value into
 * the slot, and appends the slot to a completion ring when it completes inside
 * progress. JavaScript reads both with plain loads: no request object crosses
 * the boundary and nothing is allocated per completion.
 */
import { MprunError } from '../../core/errors.js';

/** ucs_status_t's UCS_INPROGRESS. */
export const IN_PROGRESS = 1;

const CTL_RING_TAIL = 0;
const CTL_INBOX = 1;
const CTL_FAILED_EPS = 2;

/** What completes a slot (one per kind of operation; held per slot, not allocated per operation). */
export interface SlotOwner {
  /** The slot completed with `status` (0 or a negative ucs_status_t). */
  completed(slot: number, status: number): void;
}

export class Slots {
  readonly count: number;
  readonly status: Int32Array;
  /** The old value of an atomic, as 64 bits. */
  readonly result64: BigInt64Array;
  /** The same words as 32-bit halves (an atomic on 32 bits: index 2 * slot). */
  readonly result32: Int32Array;
  readonly #ring: Int32Array;
  readonly #ctl: Int32Array;
  readonly #free: Int32Array;
  #freeTop: number;
  /** The completion ring's read counter: an int32 that wraps as native code's write counter does. */
  #ringHead: number;
  readonly #owners: (SlotOwner | null)[];

  constructor(control: ArrayBuffer, count: number) {
    // A power of two: the ring is indexed by the counters' low bits, across their wrap at 2^31.
    if (!(count > 0 && (count & (count - 1)) === 0)) throw new RangeError(`UCX slots: ${count} is not a power of two`);
    this.count = count;
    this.status = new Int32Array(control, 0, count);
    this.result64 = new BigInt64Array(control, count * 4, count);
    this.result32 = new Int32Array(control, count * 4, count * 2);
    this.#ring = new Int32Array(control, count * 12, count);
    this.#ctl = new Int32Array(control, count * 16, 16);
    this.#free = new Int32Array(count);
    for (let i = 0; i < count; i++) this.#free[i] = count - 1 - i;
    this.#freeTop = count;
    this.#owners = new Array<SlotOwner | null>(count).fill(null);
    this.#ringHead = Atomics.load(this.#ctl, CTL_RING_TAIL);
  }

  /** A free slot for `owner`, or -1 when all are in flight (progress, then retry). */
  take(owner: SlotOwner): number {
    if (this.#freeTop === 0) return -1;
    const slot = this.#free[--this.#freeTop]!;
    this.#owners[slot] = owner;
    return slot;
  }

  /** Gives back a slot whose operation completed at once (it never reaches the ring). */
  give(slot: number): void {
    this.#owners[slot] = null;
    this.#free[this.#freeTop++] = slot;
  }

  get inFlight(): number {
    return this.count - this.#freeTop;
  }

  /** Hands every slot completed since the last call to its owner; how many. */
  drain(): number {
    const tail = Atomics.load(this.#ctl, CTL_RING_TAIL);
    let n = 0;
    while (this.#ringHead !== tail) {
      // Not `%`: the counter is negative after 2^31 completions (hours of gets), and a negative
      // index threw on every later progress().
      const slot = Atomics.load(this.#ring, this.#ringHead & (this.count - 1));
      this.#ringHead = (this.#ringHead + 1) | 0;
      const owner = this.#owners[slot];
      const status = Atomics.load(this.status, slot);
      this.give(slot);
      n++;
      if (owner !== null) owner.completed(slot, status);
    }
    return n;
  }

  /** Whether message records wait in the inbox. */
  inboxWaiting(): boolean {
    return Atomics.load(this.#ctl, CTL_INBOX) !== 0;
  }

  /** Bumped by native code each time an endpoint fails. */
  failedEndpoints(): number {
    return Atomics.load(this.#ctl, CTL_FAILED_EPS);
  }
}

/** An error of the UCX path, naming the operation, the peer and UCX's status. */
export function ucxError(what: string, status: string, rank?: number): MprunError {
  return new MprunError('ERR_MPRUN_UCX', `${what}: ${status}`, rank === undefined ? undefined : { rank });
}
