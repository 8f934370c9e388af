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
import { fileURLToPath } from 'node:url';
// Imported, not the global: Node 20's global `process` is a getter, read on every wait. The waits'
// clock is the addon's (nowMs), not performance.now: node:perf_hooks cost 2.3 ms of a rank's start.
import { nextTick } from 'node:process';
import { native } from '../native/index.js';
import { WAKE_HEAP, WAKE_MESSAGE, WAKE_SYNC, armSleep, disarmSleep, type ControlSegment } from '../transports/shm/control.js';
import { MprunError } from '../core/errors.js';
import { continuationsRun, eventLoopTurn } from '../core/turns.js';
import type { Steps } from './coll/engine.js';

/** block() results */
export const READY = 1;
export const TIMED_OUT = 0;
export const OTHER_COMPLETED = 2;

const nothing = (): boolean => false;

/** A wait that has lasted long enough to be reported (where a hung rank hangs). */
export interface WaitReport {
  /** The operation: kind, peer or team, tag (and the API call it serves, e.g. checkpoint()). */
  what: string;
  /** When the wait began (ms since the epoch). */
  since: number;
  /** The line of the program's code that called the operation, when the stack shows it. */
  site: string;
}

interface ActiveWait {
  what: () => string;
  context: string | null;
  since: number;
  reported: WaitReport | null;
}

/**
 * Where mprun's own code lives: its frames are not the caller's. This file is
 * runtime/wait.ts in the sources or dist/runtime/wait.js compiled (whose
 * frames source maps report as the sources): the layer folders one and two
 * levels up cover both.
 */
const ownCode = ['../', '../../'].flatMap((up) => ['runtime', 'transports', 'launcher', 'native', 'core'].map((d) => fileURLToPath(new URL(`${up}${d}/`, import.meta.url))));

/** The first frame of `stack` outside mprun and Node: the program's line that called into mprun. */
export function callerSite(stack: string | undefined): string {
  for (const line of (stack ?? '').split('\n').slice(1)) {
    const m = /(?:\(|at (?:async )?)((?:file:\/\/)?\/[^()\s]+:\d+:\d+)\)?\s*$/.exec(line);
    if (m === null) continue;
    const where = m[1]!.startsWith('file://') ? fileURLToPath(m[1]!.replace(/:\d+:\d+$/, '')) + m[1]!.slice(m[1]!.search(/:\d+:\d+$/)) : m[1]!;
    if (ownCode.some((d) => where.startsWith(d)) || where.includes('/node_modules/')) continue;
    return where;
  }
  return 'unknown (no frame of the program on the stack)';
}

export class Waiter {
  readonly #ctrl: ControlSegment;
  readonly #i32: Int32Array;
  readonly #door: number;
  readonly #sleeping: number;
  readonly #spinMs: number;
  readonly #yield: boolean;
  readonly #sliceMs: number;
  /** A native thread naps on our sleeping word while we poll: wake it when we go to sleep. */
  readonly #wakeHelper: boolean;
  /** syncDozeNs() when the rank has nothing pending: a slice, or 0 once anything but the node's memory brings it events. */
  #dozeNs: number;
  #progress: () => boolean = nothing;
  #busy: () => boolean = nothing;
  #network: () => boolean = nothing;
  #loopReplies: () => boolean = nothing;
  #mayDoze: () => boolean = () => true;
  #pump: () => void = () => undefined;
  #beforeBlocking: (what: () => string) => void = () => undefined;
  /** Waits in progress (several when operations wait concurrently); reported once they last #reportMs. */
  readonly #active = new Set<ActiveWait>();
  #reportMs = Infinity;
  #report: (waits: WaitReport[]) => void = () => undefined;
  /** The API call the current waits serve (checkpoint(), finalize(), ...), for the report. */
  context: string | null = null;
  /**
   * Promise-returning collectives in flight (or queued behind one) on every
   * team of this rank: their later steps run in their continuations, which a
   * synchronous call's wait cannot run, so synchronous calls refuse meanwhile.
   */
  asyncSteps = 0;
  /**
   * The asynchronous waits pending (wait()): one blocking this thread returns
   * early to the event loop when another's condition holds, whose continuation
   * (another team's next step, the code after a waitUntil) a peer may need.
   */
  readonly #asyncWaits: Array<{ ready: () => boolean; wake: number }> = [];
  /**
   * Continuations known to be queued but not registered as waits: a collective between its fast
   * call and its steps (Team.#resumed), the code after a wait that has just ended (until the
   * microtasks drain). An asynchronous wait that blocks meanwhile returns to let them run.
   */
  runnable = 0;

  constructor(ctrl: ControlSegment, localRank: number, spinMicros: number, yieldWhileSpinning: boolean, sliceMs: number) {
    this.#ctrl = ctrl;
    this.#i32 = ctrl.i32;
    this.#door = ctrl.doorIndex(localRank);
    this.#sleeping = ctrl.sleepingIndex(localRank);
    this.#spinMs = spinMicros / 1000;
    this.#yield = yieldWhileSpinning;
    this.#sliceMs = sliceMs;
    // Native threads that take in events for this rank ring its doorbell too: UCX's progress
    // thread (messages, completions, peers' puts and atomics), or its wake thread when the
    // progress thread is off, while this rank sleeps below.
    this.#wakeHelper = native().ucx.doorbell(ctrl.i32, this.#door, this.#sleeping, WAKE_MESSAGE, WAKE_HEAP);
    // At most a second (MPRUN_BLOCK_SLICE_MS may be anything): block() then reports and checks.
    this.#dozeNs = this.#wakeHelper ? 0 : Math.min(sliceMs, 1000) * 1e6;
  }

  /**
   * How long a synchronous call's native wait (native/words.h WaitUntil: the
   * receive of a message of our queue, a small collective within the node)
   * may sleep on the doorbell itself, after its poll, before it returns and
   * block() takes over: a slice when only the node's shared memory brings
   * this rank events (no network, no native helper thread, no hook that must
   * run before a sleep) and the rank has no operation pending that progress()
   * would drive; else 0. Why: a peer stalled past the poll (while V8 compiles
   * its code) sent every call through the steps and this file's wait loop,
   * whose own compilation took the cores again (README, "Cold and steady").
   */
  syncDozeNs(): number {
    return this.#busy() ? 0 : this.#dozeNs;
  }

  /**
   * As syncDozeNs, for a promise-returning collective resumed in its
   * continuation (Team.#resumed), `ownSteps` being its own team's collectives
   * in asyncSteps: 0 as well while another team's is in flight, or any other
   * asynchronous wait or resume is pending. Their continuations run only on
   * this thread (a synchronous call's do not run either way), and a peer may
   * need them before it joins this collective.
   */
  resumeDozeNs(ownSteps: number): number {
    return this.asyncSteps > ownSteps || this.#asyncWaits.length > 0 || this.runnable > 1 ? 0 : this.syncDozeNs();
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
   * `loopReplies` says whether some awaited reply can only be read by the
   * event loop (an agent link's; UCX's come through progress()): an
   * asynchronous wait then yields to the loop after a short poll, not after the
   * whole spin (a get or an atomic over --net tcp cost the 200 us spin each).
   */
  network(pending: () => boolean, pump: () => void, loopReplies: () => boolean = pending): void {
    this.#dozeNs = 0;
    this.#network = pending;
    this.#pump = pump;
    this.#loopReplies = loopReplies;
  }

  /**
   * `bind` runs before a synchronous wait blocks: it finishes, blocking, what
   * only the event loop would otherwise finish (endpoints to other nodes whose
   * binding began on first use), or throws saying why it cannot.
   */
  beforeBlocking(bind: (what: () => string) => void): void {
    this.#dozeNs = 0;
    this.#beforeBlocking = bind;
  }

  /**
   * `mayDoze` runs just before this rank sleeps on its doorbell, after its
   * last look at progress: false when something is pending, and the rank polls
   * on instead. UCX without its progress thread arms the worker here, so that
   * the native wake thread rings the doorbell when something arrives.
   */
  beforeSleep(mayDoze: () => boolean): void {
    this.#dozeNs = 0;
    this.#mayDoze = mayDoze;
  }

  /**
   * Where hang reports go: a wait that lasts `afterMs` is described (its
   * operation and the program's line that called it) and `sink` gets every
   * such wait in progress, again when one of them ends. Costs nothing until
   * a wait has lasted that long.
   */
  reportWaits(afterMs: number, sink: (waits: WaitReport[]) => void): void {
    this.#reportMs = afterMs;
    this.#report = sink;
  }

  #begin(what: () => string, since: number): ActiveWait {
    const w: ActiveWait = { what, context: this.context, since, reported: null };
    this.#active.add(w);
    return w;
  }

  /** Reports `w` once it has lasted long enough; the stack here still shows the program's call (async frames too). */
  #check(w: ActiveWait): void {
    if (w.reported !== null || Date.now() - w.since < this.#reportMs) return;
    const what = w.context === null ? w.what() : `${w.what()} in ${w.context}`;
    w.reported = { what, since: w.since, site: callerSite(new Error().stack) };
    this.#sendReports();
  }

  #end(w: ActiveWait): void {
    this.#active.delete(w);
    if (w.reported !== null) this.#sendReports();
  }

  #sendReports(): void {
    const waits: WaitReport[] = [];
    for (const a of this.#active) if (a.reported !== null) waits.push(a.reported);
    this.#report(waits);
  }

  /**
   * Throws when the job is aborting (a peer died, mprun was signalled, ...), or
   * when the world was finalized under a wait nobody awaits any more (the
   * runtime's own sends, which it does not wait for: p2p.ts sendInternal).
   */
  checkAbort(): void {
    if (this.#ctrl.unmapped) throw new MprunError('ERR_MPRUN_FINALIZED', 'the world is finalized');
    if (this.#ctrl.aborted()) throw new MprunError('ERR_MPRUN_ABORTED', `job aborted: ${this.#ctrl.abortReason()}`);
  }

  /**
   * Waits on this thread until `ready()` holds (READY), another pending
   * operation completes (OTHER_COMPLETED), or `budgetMs` passes (TIMED_OUT).
   * `wake` names the classes of events (WAKE_MESSAGE, WAKE_HEAP, WAKE_SYNC)
   * that can make it hold. `toLoop` (an asynchronous wait): return TIMED_OUT
   * early when a reply only the event loop can read is awaited.
   */
  block(ready: () => boolean, wake: number, budgetMs = Infinity, toLoop = false): number {
    if (ready()) return READY;
    const n = native();
    const i32 = this.#i32;
    const start = n.nowMs();
    for (;;) {
      // Poll for a bounded time: after a wake-up too, so that a stream of
      // events costs one wake syscall per spin period, not one per event.
      const spinUntil = n.nowMs() + this.#spinMs;
      // Other asynchronous waits pending: their conditions are checked too (every 64 polls and
      // before a sleep), and woken for; a resume pending, its continuation is let run at once.
      const others = toLoop && (this.#asyncWaits.length > 1 || this.runnable > 0);
      for (let i = 1; ; i++) {
        this.#pump();
        if (this.#progress()) return ready() ? READY : OTHER_COMPLETED;
        if (ready()) return READY;
        if (this.#yield) n.yield();
        if ((i & 63) === 0) {
          this.checkAbort();
          if (others && this.#otherReady(ready)) return TIMED_OUT;
          // No budget (a wait's first turn): poll, no spin, no sleep.
          if (budgetMs <= 0) return TIMED_OUT;
          if (n.nowMs() >= spinUntil) break;
          if (toLoop && this.#loopReplies()) return TIMED_OUT;
        }
      }
      const network = this.#network();
      if (budgetMs !== Infinity && network) return TIMED_OUT;
      const seen = Atomics.load(i32, this.#door);
      const armed = armSleep(i32, this.#sleeping, (this.#busy() ? wake | WAKE_MESSAGE : wake) | (others ? this.#asyncWake() : 0));
      if (this.#progress()) {
        disarmSleep(i32, this.#sleeping, armed);
        return ready() ? READY : OTHER_COMPLETED;
      }
      if (ready()) {
        disarmSleep(i32, this.#sleeping, armed);
        return READY;
      }
      if (others && this.#otherReady(ready)) {
        disarmSleep(i32, this.#sleeping, armed);
        return TIMED_OUT;
      }
      this.checkAbort();
      const left = budgetMs - (n.nowMs() - start);
      if (left <= 0) {
        disarmSleep(i32, this.#sleeping, armed);
        return TIMED_OUT;
      }
      if (!this.#mayDoze()) {
        disarmSleep(i32, this.#sleeping, armed);
        continue;
      }
      if (this.#wakeHelper) n.futexWake(i32, this.#sleeping);
      n.futexWait(i32, this.#door, seen, Math.min(left, network ? 1 : this.#sliceMs));
      disarmSleep(i32, this.#sleeping, armed);
      this.checkAbort();
    }
  }

  /** The wake classes of every pending asynchronous wait: what a sleep of any of them must wake for. */
  #asyncWake(): number {
    let wake = 0;
    for (const w of this.#asyncWaits) wake |= w.wake;
    return wake;
  }

  /** Whether a pending asynchronous wait other than the one of `ready` (or a pending resume) may go on. */
  #otherReady(ready: () => boolean): boolean {
    if (this.runnable > 0) return true;
    for (const w of this.#asyncWaits) {
      if (w.ready === ready) continue;
      try {
        if (w.ready()) return true;
      } catch {
        return true; // its own wait runs it again and fails with it
      }
    }
    return false;
  }

  /**
   * Polls `ready()` (driving progress) for at most `ns` nanoseconds; returns
   * whether it holds. Bounded, so it cannot deadlock; it spares a short wait
   * the cost of going asynchronous.
   */
  poll(ready: () => boolean, ns: number): boolean {
    if (ns <= 0) return ready();
    const n = native();
    const until = n.nowMs() + ns / 1e6;
    for (let i = 1; ; i++) {
      this.#pump();
      this.#progress();
      if (ready()) return true;
      // When ranks outnumber cores, the rank we wait for may need this core.
      if (this.#yield) n.yield();
      if ((i & 15) === 0 && n.nowMs() > until) return false;
    }
  }

  /**
   * Throws unless a synchronous call may start: not while a promise-returning
   * collective is in flight here (asyncSteps). A peer that awaits it before it
   * joins this call would wait for ever for steps this thread cannot run.
   */
  checkSyncCall(call: string): void {
    // `call` a constant: this is on every synchronous call's path, the message built only to throw.
    if (this.asyncSteps > 0) throw new MprunError('ERR_MPRUN_ARG', `${call}: a synchronous call while a promise-returning collective is in flight on this rank: await it first (a synchronous call holds the thread, and that collective's later steps run in its continuations)`);
  }

  /** Runs a collective's steps to the end, blocking this thread (the synchronous collectives: barrierSync, split, alloc, ...). */
  runSteps<T>(steps: Steps<T>, what: () => string): T {
    for (;;) {
      const r = steps.next();
      if (r.done === true) return r.value;
      this.blockUntil(r.value, r.value.wake ?? WAKE_SYNC, what);
    }
  }

  /** Blocks this thread until `ready()` holds (the synchronous calls: sendSync, barrierSync, alloc, ...); `what` describes it. */
  blockUntil(ready: () => boolean, wake: number, what: () => string): void {
    if (ready()) return;
    this.#beforeBlocking(what);
    const w = this.#begin(what, Date.now());
    try {
      while (this.block(ready, wake, this.#sliceMs) !== READY) this.#check(w);
    } finally {
      this.#end(w);
    }
  }

  /**
   * Waits for an operation's promise, driving progress meanwhile: a transport
   * whose completions only its progress() delivers (UCX) settles it that way;
   * one whose replies the event loop reads (dsm) while the wait yields to it.
   */
  async settle<T>(p: Promise<T>, what: () => string): Promise<T> {
    let settled = false;
    const done = p.finally(() => {
      settled = true;
    });
    // An operation that completed in its call (the agents' native thread answers within it)
    // may settle only a few promise hops later: seen here, where wait() would poll for it
    // and then sleep a whole slice on a doorbell nobody rings (gets took 21 ms).
    await continuationsRun();
    if (!settled) await this.wait(() => settled, WAKE_MESSAGE, what);
    return done;
  }

  /** Waits until `ready()` holds for this rank's own memory: peers' puts and atomics ring for it. */
  waitForMemory(ready: () => boolean, what: () => string): Promise<void> {
    return this.wait(ready, WAKE_HEAP, what);
  }

  /**
   * Waits until `ready()` holds (`what` describes it for hang reports). Starts after the caller's synchronous code
   * (so that `const r = recv(); await send(); await r` posts the send before
   * it blocks), lets continuations of other completed operations run, and lets
   * the event loop run between slices.
   */
  async wait(test: () => boolean, wake: number, what: () => string): Promise<void> {
    // Pending from the call on: a wait that blocks before this one's first turn returns to let it
    // run. Other waits poll it too: once it holds, it is not polled again (a poll may take a message).
    let met = false;
    const ready = (): boolean => met || (met = test());
    const pending = { ready, wake };
    this.#asyncWaits.push(pending);
    let w: ActiveWait | null = null;
    try {
      await null;
      // Tracked for hang reports only once it outlasts a slice: short waits (the common case,
      // a barrier's peer a few microseconds late) pay one clock read, no record.
      const since = Date.now();
      // The first turn only polls: before any sleep, the continuations queued behind this wait
      // (the code after a wait that has just ended, invisible here) run, as a peer may need them.
      for (let turn = 0; ; turn++) {
        // TIMED_OUT too when another pending wait may go on: the event loop runs its continuation.
        const r = this.block(ready, wake, turn === 0 ? 0 : this.#sliceMs, true);
        if (r === READY) {
          // Its continuation (the collective's next step, the program after an await) is queued,
          // perhaps behind another wait's turn: that one gives way until the microtasks drain.
          this.runnable++;
          nextTick(() => this.runnable--);
          return;
        }
        // A wait that yields to the event loop early (toLoop) is a record only once it outlasts a slice too.
        if (w === null && Date.now() - since >= this.#sliceMs) w = this.#begin(what, since);
        if (w !== null) this.#check(w);
        await (turn === 0 || r === OTHER_COMPLETED ? continuationsRun() : eventLoopTurn());
        this.checkAbort();
      }
    } finally {
      if (w !== null) this.#end(w);
      this.#asyncWaits.splice(this.#asyncWaits.indexOf(pending), 1);
    }
  }
}
