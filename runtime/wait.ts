/**
 * How a rank waits: poll for a bounded time (yielding the core when ranks
 * outnumber cores), then sleep on this rank's doorbell futex in the node
 * control segment. Whoever makes a waited-for event (a message, a put, an
 * atomic, a barrier flag) rings the doorbell of the ranks sleeping for that
 * class of event, so sleepers wake at once; an aborting job rings every
 * doorbell. Never a busy loop without a bound.
 *
 * Every wait drives the rank's progress engine (pending sends and receives),
 * so concurrent operations never starve each other; a wait that completes
 * another operation returns, so that operation's continuation runs at once.
 */
import { native } from '../native/index.js';
import { WAKE_MESSAGE, type ControlSegment } from '../transports/xpmem/control.js';
import { MprunError } from './errors.js';

/** block() results */
export const READY = 1;
export const TIMED_OUT = 0;
export const OTHER_COMPLETED = 2;

const nothing = (): boolean => false;

export class Waiter {
  readonly #ctrl: ControlSegment;
  readonly #i32: Int32Array;
  readonly #door: number;
  readonly #sleeping: number;
  readonly #spinMs: number;
  readonly #yield: boolean;
  readonly #sliceMs: number;
  #progress: () => boolean = nothing;
  #busy: () => boolean = nothing;
  #network: () => boolean = nothing;
  #pump: () => void = () => undefined;

  constructor(ctrl: ControlSegment, localRank: number, spinMicros: number, yieldWhileSpinning: boolean, sliceMs: number) {
    this.#ctrl = ctrl;
    this.#i32 = ctrl.i32;
    this.#door = ctrl.doorIndex(localRank);
    this.#sleeping = ctrl.sleepingIndex(localRank);
    this.#spinMs = spinMicros / 1000;
    this.#yield = yieldWhileSpinning;
    this.#sliceMs = sliceMs;
  }

  /** The progress engine every wait drives, and whether it has pending operations. */
  attach(progress: () => boolean, busy: () => boolean): void {
    this.#progress = progress;
    this.#busy = busy;
  }

  /**
   * Connections to other nodes: `pending` says whether replies are awaited
   * or output is queued; `pump` pushes queued output. Replies are read by the
   * event loop, so an asynchronous wait then never sleeps on the doorbell but
   * yields to the loop; a synchronous one sleeps in short slices, pumping.
   */
  network(pending: () => boolean, pump: () => void): void {
    this.#network = pending;
    this.#pump = pump;
  }

  /** Throws when the job is aborting (a peer died, mprun was signalled, ...). */
  checkAbort(): void {
    if (this.#ctrl.aborted()) throw new MprunError('ERR_MPRUN_ABORTED', `job aborted: ${this.#ctrl.abortReason()}`);
  }

  /**
   * Waits on this thread until `ready()` holds (READY), another pending
   * operation completes (OTHER_COMPLETED), or `budgetMs` passes (TIMED_OUT).
   * `wake` names the classes of events (WAKE_MESSAGE, WAKE_HEAP, WAKE_SYNC)
   * that can make it hold.
   */
  block(ready: () => boolean, wake: number, budgetMs = Infinity): number {
    if (ready()) return READY;
    const n = native();
    const i32 = this.#i32;
    const start = performance.now();
    for (;;) {
      // Poll for a bounded time: after a wake-up too, so that a stream of
      // events costs one wake syscall per spin period, not one per event.
      const spinUntil = performance.now() + this.#spinMs;
      for (let i = 1; ; i++) {
        this.#pump();
        if (this.#progress()) return ready() ? READY : OTHER_COMPLETED;
        if (ready()) return READY;
        if (this.#yield) n.yield();
        if ((i & 63) === 0) {
          this.checkAbort();
          if (performance.now() >= spinUntil) break;
        }
      }
      const network = this.#network();
      if (budgetMs !== Infinity && network) return TIMED_OUT;
      const seen = Atomics.load(i32, this.#door);
      Atomics.store(i32, this.#sleeping, this.#busy() ? wake | WAKE_MESSAGE : wake);
      if (this.#progress()) {
        Atomics.store(i32, this.#sleeping, 0);
        return ready() ? READY : OTHER_COMPLETED;
      }
      if (ready()) {
        Atomics.store(i32, this.#sleeping, 0);
        return READY;
      }
      this.checkAbort();
      const left = budgetMs - (performance.now() - start);
      if (left <= 0) {
        Atomics.store(i32, this.#sleeping, 0);
        return TIMED_OUT;
      }
      n.futexWait(i32, this.#door, seen, Math.min(left, network ? 1 : this.#sliceMs));
      Atomics.store(i32, this.#sleeping, 0);
      this.checkAbort();
    }
  }

  /**
   * Polls `ready()` (driving progress) for at most `ns` nanoseconds; returns
   * whether it holds. Bounded, so it cannot deadlock; it spares a short wait
   * the cost of going asynchronous.
   */
  poll(ready: () => boolean, ns: number): boolean {
    if (ns <= 0) return ready();
    const until = performance.now() + ns / 1e6;
    const n = native();
    for (let i = 1; ; i++) {
      this.#pump();
      this.#progress();
      if (ready()) return true;
      // When ranks outnumber cores, the rank we wait for may need this core.
      if (this.#yield) n.yield();
      if ((i & 15) === 0 && performance.now() > until) return false;
    }
  }

  /** Blocks this thread until `ready()` holds (for synchronous collectives such as alloc). */
  blockUntil(ready: () => boolean, wake: number): void {
    while (this.block(ready, wake) !== READY);
  }

  /**
   * Waits until `ready()` holds. Starts after the caller's synchronous code
   * (so that `const r = recv(); await send(); await r` posts the send before
   * it blocks), lets continuations of other completed operations run, and lets
   * the event loop run between slices.
   */
  async wait(ready: () => boolean, wake: number): Promise<void> {
    await null;
    for (;;) {
      const r = this.block(ready, wake, this.#sliceMs);
      if (r === READY) return;
      if (r === OTHER_COMPLETED) await null;
      else await new Promise<void>((resolve) => setImmediate(resolve));
      this.checkAbort();
    }
  }
}
