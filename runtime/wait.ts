/**
 * How a rank waits: poll for a bounded time (yielding the core when ranks
 * outnumber cores), then sleep on this rank's doorbell futex in the node
 * control segment. Whoever makes a waited-for event (a message, a put, an
 * atomic, a barrier flag) rings the doorbell, so sleepers wake at once; an
 * aborting job rings every doorbell. Never a busy loop without a bound.
 */
import { native } from '../native/index.js';
import type { ControlSegment } from '../transports/xpmem/control.js';
import { MprunError } from './errors.js';

export class Waiter {
  readonly #ctrl: ControlSegment;
  readonly #i32: Int32Array;
  readonly #door: number;
  readonly #sleeping: number;
  readonly #spinMs: number;
  readonly #yield: boolean;
  readonly #sliceMs: number;

  constructor(ctrl: ControlSegment, localRank: number, spinMicros: number, yieldWhileSpinning: boolean, sliceMs: number) {
    this.#ctrl = ctrl;
    this.#i32 = ctrl.i32;
    this.#door = ctrl.doorIndex(localRank);
    this.#sleeping = ctrl.sleepingIndex(localRank);
    this.#spinMs = spinMicros / 1000;
    this.#yield = yieldWhileSpinning;
    this.#sliceMs = sliceMs;
  }

  /** Throws when the job is aborting (a peer died, mprun was signalled, ...). */
  checkAbort(): void {
    if (this.#ctrl.aborted()) throw new MprunError('ERR_MPRUN_ABORTED', `job aborted: ${this.#ctrl.abortReason()}`);
  }

  /**
   * Waits on this thread until `ready()` holds, for at most `budgetMs` when
   * given; returns whether it holds. `wake` names the classes of events
   * (WAKE_MESSAGE, WAKE_HEAP, WAKE_SYNC) that can make it hold. Used directly by synchronous collectives
   * (alloc), and in slices by wait().
   */
  block(ready: () => boolean, wake: number, budgetMs = Infinity): boolean {
    if (ready()) return true;
    const n = native();
    const i32 = this.#i32;
    const start = performance.now();
    for (;;) {
      // Poll for a bounded time: after a wake-up too, so that a stream of
      // events costs one wake syscall per spin period, not one per event.
      const spinUntil = performance.now() + this.#spinMs;
      for (let i = 1; ; i++) {
        if (ready()) return true;
        if (this.#yield) n.yield();
        if ((i & 63) === 0) {
          this.checkAbort();
          if (performance.now() >= spinUntil) break;
        }
      }
      const seen = Atomics.load(i32, this.#door);
      Atomics.store(i32, this.#sleeping, wake);
      if (ready()) {
        Atomics.store(i32, this.#sleeping, 0);
        return true;
      }
      this.checkAbort();
      const left = budgetMs - (performance.now() - start);
      if (left <= 0) {
        Atomics.store(i32, this.#sleeping, 0);
        return false;
      }
      n.futexWait(i32, this.#door, seen, Math.min(left, this.#sliceMs));
      Atomics.store(i32, this.#sleeping, 0);
      this.checkAbort();
    }
  }

  /** Waits until `ready()` holds, letting the event loop run between slices. */
  async wait(ready: () => boolean, wake: number): Promise<void> {
    while (!this.block(ready, wake, this.#sliceMs)) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.checkAbort();
    }
  }
}
