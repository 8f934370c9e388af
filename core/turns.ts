/**
 * Turns of Node's event loop, for code that waits in slices and must let the
 * rest of the process run between them: the continuations already queued, or
 * those and timers and I/O as well.
 */
import { nextTick } from 'node:process';

/**
 * Resolves once every continuation queued so far has run, and those they queue:
 * Node runs a nextTick only after the microtask queue is empty. A completion
 * found by progress() settles the operation's promise, but what the waiter
 * (runtime/wait.ts) checks may become true only microtasks later (quiet's Promise.all over
 * flushes, then settle()'s finally: two ticks); after `await null` the next
 * block() still saw it false and slept a whole slice on a doorbell that nobody
 * rings (a put+quiet over UCX took 21 ms instead of tens of microseconds).
 */
export const continuationsRun = (): Promise<void> => new Promise((resolve) => nextTick(resolve));

/** Resolves after a turn of the event loop: every continuation queued before has run, and timers and I/O had theirs. */
export const eventLoopTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
