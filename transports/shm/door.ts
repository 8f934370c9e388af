/**
 * A participant's doorbell watched for a process whose JavaScript thread must
 * not block (native/door-watch.cc): the node agent, which writes into its
 * ranks' queues as their gateway. A rank that finds a queue full sleeps on its
 * door until the consumer makes room and rings it (queue.ts); the agent arms
 * this instead and is called back once the door moves.
 */
import { native } from '../../native/index.js';
import type { ControlSegment } from './control.js';

export class DoorWatch {
  readonly #handle: number;
  #closed = false;

  /**
   * Watches participant `participant`'s door for rings of class `wake`:
   * `onRing` runs once the door moved after arm(), or after `sliceMs`
   * without a ring (one can be lost: native/door-watch.cc), so the caller
   * checks its condition again and arms again while it does not hold.
   */
  constructor(ctrl: ControlSegment, participant: number, wake: number, onRing: () => void, sliceMs = 10) {
    this.#handle = native().doorWatch(ctrl.i32, ctrl.sleepingIndex(participant), ctrl.doorIndex(participant), wake, () => {
      if (!this.#closed) onRing();
    }, sliceMs);
  }

  /** As a rank before it sleeps: after this, check the condition once more; onRing follows a ring. */
  arm(): void {
    if (!this.#closed) native().doorArm(this.#handle);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native().doorUnwatch(this.#handle);
  }
}
