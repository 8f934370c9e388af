/**
 * Teams (MPI communicators, OpenSHMEM teams): an ordered group of ranks with
 * collectives. Every team has a slot, agreed by its members when it is made,
 * that fixes where its flags (control segment) and scratch (each member's
 * collective arena) are, and its tags when it spans nodes. A team within one
 * node runs its collectives through shared memory (ShmCollectives); a team
 * across nodes over the runtime's messages, hierarchically (MsgCollectives).
 * Collectives on one team run in call order; every member must call them in
 * the same order, as MPI requires.
 */
import { WAKE_SYNC } from '../transports/shm/control.js';
import { MprunError } from '../core/errors.js';
import { KIND, partsOf, REDUCTION_NAMES, RESOLVED, splitPlan, type CollectiveEngine, type Ready, type ReductionKind, type Steps } from './coll/engine.js';
import { ShmCollectives } from './coll/shm.js';
import { MsgCollectives } from './coll/msg.js';
import { leaderPeers } from './coll/peers.js';
import { ReductionCheck, reductionArray, scalarOf, type ReduceOp, type Scalar } from './coll/ops.js';
import { isTypedArray, type TypedArray } from '../core/types.js';
import { shmTeamLayout, type TeamContext } from './world-parts.js';
import { continuationsRun, eventLoopTurn } from '../core/turns.js';

export type { ReduceOp } from './coll/ops.js';
const noop = (): void => undefined;
export type { TeamContext } from './world-parts.js';

export class Team {
  /** This rank's rank in the team, and the team's size. */
  readonly rank: number;
  readonly size: number;
  /** World rank of each team rank. */
  readonly worldRanks: readonly number[];
  readonly #ctx: TeamContext;
  readonly #engine: CollectiveEngine;
  /** The engine again when it has native fast paths (a team within one node), else null. */
  readonly #fast: ShmCollectives | null = null;
  #tail: Promise<unknown> = Promise.resolve();
  #inFlight = 0;
  /** Collectives called while others were in flight, waiting their turn on #tail. */
  #queued = 0;
  readonly #check = new ReductionCheck();
  #broken: Error | null = null;
  readonly #slot: number;
  /** Network partners of this member (world ranks), and their binding while it is under way. */
  #partners: readonly number[] = [];
  #preparing: Promise<void> | null = null;

  /** @internal teams are made by world.split(), team.split() and world.team() */
  constructor(ctx: TeamContext, worldRanks: readonly number[], slot: number) {
    this.#ctx = ctx;
    this.#slot = slot;
    this.worldRanks = worldRanks;
    this.size = worldRanks.length;
    this.rank = worldRanks.indexOf(ctx.worldRank);
    if (this.rank < 0) throw new MprunError('ERR_MPRUN_ARG', 'this rank is not a member of the team');
    const locals = worldRanks.map((w) => ctx.localRankOf(w));
    if (locals.some((l) => l < 0)) {
      const nodes = worldRanks.map((w) => ctx.nodeOf(w));
      this.#engine = new MsgCollectives({ me: this.rank, size: this.size, worldRanks, nodes, slot, messenger: ctx.messenger });
      // Peers on other nodes connect on first use; this member's collective partners start now.
      this.#partners = leaderPeers(nodes, this.rank).map((r) => worldRanks[r]!);
      const p = ctx.prepare?.(this.#partners) ?? null;
      if (p !== null) {
        this.#preparing = p;
        p.then(() => (this.#preparing = null), () => undefined);
      }
      return;
    }
    this.#engine = this.#fast = new ShmCollectives(shmTeamLayout(ctx, worldRanks, locals, this.rank, slot));
  }

  /** World rank of team rank `r`. */
  worldRank(r: number): number {
    const w = this.worldRanks[r];
    if (w === undefined) throw new RangeError(`${r} is not a rank of this team (size ${this.size})`);
    return w;
  }

  /** The error for a root that is not a rank of this team, else null (promise-returning calls reject with it). */
  #badRoot(root: number): RangeError | null {
    return Number.isInteger(root) && root >= 0 && root < this.size ? null : new RangeError(`root ${root} is not a rank of this team (size ${this.size})`);
  }

  /**
   * Runs collectives one after another, in call order. An idle team runs the
   * steps at once, polling briefly at each wait; a collective that completes
   * so (the common small case) costs no async machinery at all.
   */
  #run<T>(kind: string, make: () => Steps<T>, itsTurn = false): Promise<T> {
    if (this.#broken !== null) return Promise.reject(this.#broken);
    try {
      this.#ctx.checkLive();
    } catch (e) {
      return Promise.reject(e);
    }
    // Behind one in flight, and behind those already waiting: a collective called from the
    // continuation of one in flight must not overtake one called before it (ranks whose
    // first one completed at once would run them in the other order: a mismatch).
    if (!itsTurn && (this.#inFlight > 0 || this.#queued > 0)) {
      this.#count(0, 1);
      const next = (): Promise<T> => {
        this.#count(0, -1);
        return this.#run(kind, make, true);
      };
      const p = this.#tail.then(next, next);
      this.#tail = p;
      return p;
    }
    if (this.#preparing !== null) {
      // The partners' cards and links are on their way: run after them (a failure fails the team).
      const ready = this.#preparing;
      this.#preparing = null;
      this.#count(1, 0);
      const p = ready.then(
        () => {
          this.#count(-1, 0);
          return this.#run(kind, make, true);
        },
        (e: unknown) => {
          this.#count(-1, 0);
          return this.#fail(e);
        },
      );
      if (!itsTurn) this.#tail = p;
      return p;
    }
    const { waiter, pollNs } = this.#ctx;
    try {
      const steps = make();
      for (;;) {
        const r = steps.next();
        if (r.done === true) return Promise.resolve(r.value);
        if (r.value.settles !== undefined || !waiter.poll(r.value, pollNs)) {
          const p = this.#continue(kind, steps, r.value);
          // The last called is the tail (one dequeued has later ones queued behind it already).
          if (!itsTurn) this.#tail = p;
          return p;
        }
      }
    } catch (e) {
      return Promise.reject(this.#fail(e));
    }
  }

  /** Continues a collective that must wait: asynchronously, driving progress while it waits. */
  async #continue<T>(kind: string, steps: Steps<T>, pending: Ready): Promise<T> {
    const { waiter, pollNs } = this.#ctx;
    this.#count(1, 0);
    try {
      let ready: Ready = pending;
      for (;;) {
        // A promise's step (settledSteps) is awaited; the others' conditions are waited for.
        if (ready.settles !== undefined) await ready.settles.then(noop, noop);
        else await waiter.wait(ready, ready.wake ?? WAKE_SYNC, () => this.#describe(kind));
        for (;;) {
          const r = steps.next();
          if (r.done === true) return r.value;
          ready = r.value;
          if (ready.settles !== undefined || !waiter.poll(ready, pollNs)) break;
        }
      }
    } catch (e) {
      return this.#fail(e);
    } finally {
      this.#count(-1, 0);
    }
  }

  /** A collective of this team, as hang reports name it. */
  #describe(kind: string): string {
    const team = this.#slot === 0 ? 'the world' : this.#slot === 1 ? "team('shared')" : `a team of ${this.size} (world ranks ${this.worldRanks.length <= 8 ? this.worldRanks.join(',') : `${this.worldRanks.slice(0, 8).join(',')},...`})`;
    return `${kind} on ${team} (as its rank ${this.rank} of ${this.size})`;
  }

  /** As #fail, for a fast path (it may have taken its round): the error, for the caller to reject with. */
  #failed(e: unknown): Error {
    const error = e instanceof Error ? e : new Error(String(e));
    this.#broken ??= error;
    return error;
  }

  /** A collective that failed half-way leaves the team's rounds out of step: later ones fail too. */
  #fail(e: unknown): never {
    this.#failed(e);
    throw e;
  }

  /** Counts collectives of this team in flight and queued behind them; the waiter counts every team's (checkSyncCall). */
  #count(inFlight: number, queued: number): void {
    this.#inFlight += inFlight;
    this.#queued += queued;
    this.#ctx.waiter.asyncSteps += inFlight + queued;
  }

  #runSync<T>(kind: string, make: () => Steps<T>): T {
    this.#ctx.checkLive();
    this.#ctx.waiter.checkSyncCall(kind);
    if (this.#broken !== null) throw this.#broken;
    if (this.#preparing !== null) {
      this.#ctx.prepareSync?.(this.#partners, () => this.#describe(kind));
      this.#preparing = null;
    }
    try {
      return this.#ctx.waiter.runSteps(make(), () => this.#describe(kind));
    } catch (e) {
      return this.#fail(e);
    }
  }

  /**
   * Waits for every member. Puts to node peers are complete and visible by
   * then: they are plain stores, ordered before the barrier's own (locked)
   * store, and large ones, whose memcpy uses non-temporal stores, end with a
   * fence in put() itself.
   */
  barrier(): Promise<void> {
    const fast = this.#fast;
    if (fast !== null && this.#mayRunFast()) {
      try {
        if (fast.tryBarrier(this.#ctx.fastPollNs)) return RESOLVED;
      } catch (e) {
        return Promise.reject(this.#failed(e));
      }
      if (fast.resumable) return this.#resumed('barrier', () => this.#engine.barrier(), () => undefined);
    }
    return this.#run('barrier', () => this.#engine.barrier());
  }

  /**
   * The rest of a collective a fast path left undone, once the caller's synchronous code has run
   * (where the steps' wait would block the thread for a slice anyway): natively first (ShmCollectives
   * .resume: a poll, then once the continuations queued so far ran asleep on the doorbell as Waiter.resumeDozeNs
   * allows), then the steps. README, "Cold and steady".
   */
  #resumed<T>(kind: string, make: () => Steps<T>, done: () => T): Promise<T> {
    const waiter = this.#ctx.waiter;
    this.#count(1, 0);
    // Until the steps' wait is registered: another wait blocking meanwhile lets this continuation run.
    waiter.runnable++;
    const p = (async (): Promise<T> => {
      let finished = false;
      try {
        await null;
        finished = this.#ctx.isLive() && this.#fast!.resume(this.#ctx.fastPollNs, 0);
        // Before a sleep, the continuations queued so far run (the code after a wait that has just ended,
        // invisible to the waiter): a peer may need them. After one in vain, timers and I/O get a turn.
        if (!finished) await continuationsRun();
        const dozeNs = finished ? 0 : waiter.resumeDozeNs(this.#inFlight + this.#queued);
        if (dozeNs > 0 && !(finished = this.#ctx.isLive() && this.#fast!.resume(0, dozeNs))) await eventLoopTurn();
      } catch (e) {
        this.#fail(e);
      } finally {
        this.#count(-1, 0);
        waiter.runnable--;
      }
      return finished ? done() : this.#run(kind, make, true);
    })();
    return (this.#tail = p);
  }

  /** Runs `make`'s steps in this team's call order, their place taken now (World's barrier after its quiet). @internal */
  queued<T>(kind: string, make: (engine: CollectiveEngine) => Steps<T>): Promise<T> {
    return this.#run(kind, () => make(this.#engine));
  }

  /**
   * Whether a collective may start on its native fast path (within a node): none of this team's
   * is in flight or failed, and the runtime is live. The fast path polls for MPRUN_COLL_POLL_US at
   * most, then leaves the rest to the steps (#run), which drive the rank's other progress while
   * they wait: a pending send or receive waits no longer than that poll.
   */
  #mayRunFast(): boolean {
    return this.#inFlight === 0 && this.#queued === 0 && this.#broken === null && this.#ctx.isLive();
  }

  /**
   * As barrier(), blocking this thread: no promise and no await, for tight
   * loops (README, "Synchronous forms"). The event loop does not run meanwhile;
   * the rank's other operations in flight still progress.
   */
  barrierSync(): void {
    this.#ctx.waiter.checkSyncCall('barrierSync');
    const fast = this.#fast;
    if (fast !== null && this.#mayRunFast()) {
      let done: boolean;
      try {
        done = fast.tryBarrier(this.#ctx.fastPollNs, this.#ctx.waiter.syncDozeNs());
      } catch (e) {
        throw this.#failed(e);
      }
      if (done) return;
    }
    this.#runSync('barrier', () => this.#engine.barrier());
  }

  /** Every member's value, blocking this thread (for synchronous collectives such as alloc). @internal */
  allgatherSync<T>(value: T, kind = 'allgather'): T[] {
    return this.#runSync(kind, () => this.#engine.gather(value, null)) as T[];
  }

  /**
   * Broadcasts from `root`. A typed array is filled in place on every member
   * (same type and length everywhere) and returned; any other value is
   * serialized and returned on every member (others may pass anything).
   */
  bcast<T>(data: T, root = 0): Promise<T> {
    const bad = this.#badRoot(root);
    if (bad !== null) return Promise.reject(bad);
    const fast = this.#fast;
    if (fast !== null && isTypedArray(data) && this.#mayRunFast()) {
      try {
        if (fast.tryBcast(data, root, this.#ctx.fastPollNs)) return Promise.resolve(data);
      } catch (e) {
        return Promise.reject(this.#failed(e));
      }
      if (fast.resumable) return this.#resumed('bcast', () => this.#engine.bcast(data, root), () => data) as Promise<T>;
    }
    return this.#run('bcast', () => this.#engine.bcast(data, root)) as Promise<T>;
  }

  /** As bcast(), blocking this thread (see barrierSync). */
  bcastSync<T>(data: T, root = 0): T {
    const bad = this.#badRoot(root);
    if (bad !== null) throw bad;
    this.#ctx.waiter.checkSyncCall('bcastSync');
    const fast = this.#fast;
    if (fast !== null && isTypedArray(data) && this.#mayRunFast()) {
      let done: boolean;
      try {
        done = fast.tryBcast(data, root, this.#ctx.fastPollNs, this.#ctx.waiter.syncDozeNs());
      } catch (e) {
        throw this.#failed(e);
      }
      if (done) return data;
    }
    return this.#runSync('bcast', () => this.#engine.bcast(data, root)) as T;
  }

  /** Reduces `buf` over the team with `op`: the result on `root` (in place for typed arrays), null elsewhere. */
  reduce<T extends TypedArray>(buf: T, op: ReduceOp, root?: number): Promise<T | null>;
  reduce(buf: number, op: ReduceOp, root?: number): Promise<number | null>;
  reduce(buf: bigint, op: ReduceOp, root?: number): Promise<bigint | null>;
  reduce(buf: TypedArray | Scalar, op: ReduceOp, root = 0): Promise<TypedArray | Scalar | null> {
    const bad = this.#badRoot(root);
    if (bad !== null) return Promise.reject(bad);
    return this.#reduction(buf, op, KIND.reduce, root);
  }

  /** Reduces `buf` over the team with `op`, the result everywhere: typed arrays in place (and returned), scalars returned. */
  allreduce<T extends TypedArray>(buf: T, op: ReduceOp): Promise<T>;
  allreduce(buf: number, op: ReduceOp): Promise<number>;
  allreduce(buf: bigint, op: ReduceOp): Promise<bigint>;
  allreduce(buf: TypedArray | Scalar, op: ReduceOp): Promise<TypedArray | Scalar> {
    return this.#reduction(buf, op, KIND.allreduce, 0) as Promise<TypedArray | Scalar>;
  }

  /** As reduce(), blocking this thread (see barrierSync). */
  reduceSync<T extends TypedArray>(buf: T, op: ReduceOp, root?: number): T | null;
  reduceSync(buf: number, op: ReduceOp, root?: number): number | null;
  reduceSync(buf: bigint, op: ReduceOp, root?: number): bigint | null;
  reduceSync(buf: TypedArray | Scalar, op: ReduceOp, root = 0): TypedArray | Scalar | null {
    const bad = this.#badRoot(root);
    if (bad !== null) throw bad;
    return this.#reductionSync(buf, op, KIND.reduce, root);
  }

  /** As allreduce(), blocking this thread (see barrierSync). */
  allreduceSync<T extends TypedArray>(buf: T, op: ReduceOp): T;
  allreduceSync(buf: number, op: ReduceOp): number;
  allreduceSync(buf: bigint, op: ReduceOp): bigint;
  allreduceSync(buf: TypedArray | Scalar, op: ReduceOp): TypedArray | Scalar {
    return this.#reductionSync(buf, op, KIND.allreduce, 0)!;
  }

  /** Inclusive prefix reduction: team rank i gets buf(0) op ... op buf(i). */
  scan<T extends TypedArray>(buf: T, op: ReduceOp): Promise<T>;
  scan(buf: number, op: ReduceOp): Promise<number>;
  scan(buf: bigint, op: ReduceOp): Promise<bigint>;
  scan(buf: TypedArray | Scalar, op: ReduceOp): Promise<TypedArray | Scalar> {
    return this.#reduction(buf, op, KIND.scan, 0) as Promise<TypedArray | Scalar>;
  }

  #reduction(buf: TypedArray | Scalar, op: ReduceOp, kind: ReductionKind, root: number): Promise<TypedArray | Scalar | null> {
    let arr: TypedArray;
    let Ctor: unknown;
    try {
      arr = reductionArray(buf, op);
      Ctor = this.#check.of(arr, op);
    } catch (e) {
      return Promise.reject(e);
    }
    const scalar = scalarOf(buf, op);
    const result: TypedArray | null = kind === KIND.reduce && this.rank !== root ? null : arr;
    const fast = this.#fast;
    if (fast !== null && this.#mayRunFast()) {
      try {
        if (fast.tryReduce(arr, op, kind, root, this.#ctx.fastPollNs, Ctor)) return Promise.resolve(result === null || scalar === null ? result : scalar(arr));
      } catch (e) {
        return Promise.reject(this.#failed(e));
      }
      const finish = (): TypedArray | Scalar | null => (result === null || scalar === null ? result : scalar(arr));
      if (fast.resumable) return this.#resumed(REDUCTION_NAMES[kind], () => this.#engine.reduce<TypedArray | Scalar | null>(arr, op, kind, root, result, scalar), finish);
    }
    return this.#run(REDUCTION_NAMES[kind], () => this.#engine.reduce<TypedArray | Scalar | null>(arr, op, kind, root, result, scalar));
  }

  /** As #reduction, blocking this thread. */
  #reductionSync(buf: TypedArray | Scalar, op: ReduceOp, kind: ReductionKind, root: number): TypedArray | Scalar | null {
    this.#ctx.waiter.checkSyncCall(kind === KIND.reduce ? 'reduceSync' : 'allreduceSync');
    const arr = reductionArray(buf, op);
    const Ctor = this.#check.of(arr, op);
    const scalar = scalarOf(buf, op);
    const result: TypedArray | null = kind === KIND.reduce && this.rank !== root ? null : arr;
    const fast = this.#fast;
    if (fast !== null && this.#mayRunFast()) {
      let done: boolean;
      try {
        done = fast.tryReduce(arr, op, kind, root, this.#ctx.fastPollNs, Ctor, this.#ctx.waiter.syncDozeNs());
      } catch (e) {
        throw this.#failed(e);
      }
      if (done) return result === null || scalar === null ? result : scalar(arr);
    }
    return this.#runSync(REDUCTION_NAMES[kind], () => this.#engine.reduce<TypedArray | Scalar | null>(arr, op, kind, root, result, scalar));
  }

  /** Every member's value, in team-rank order; typed arrays of one type come back concatenated. */
  allgather<T extends TypedArray>(value: T): Promise<T>;
  allgather<T>(value: T): Promise<T[]>;
  allgather(value: unknown): Promise<unknown> {
    return this.#run('allgather', () => this.#engine.gather(value, null));
  }

  /** As allgather, on `root` only; null elsewhere. */
  gather<T extends TypedArray>(value: T, root?: number): Promise<T | null>;
  gather<T>(value: T, root?: number): Promise<T[] | null>;
  gather(value: unknown, root = 0): Promise<unknown> {
    const bad = this.#badRoot(root);
    if (bad !== null) return Promise.reject(bad);
    return this.#run('gather', () => this.#engine.gather(value, root));
  }

  /**
   * From `root`: values[i] goes to team rank i (or, for a typed array, its
   * i-th equal slice). Others may pass anything; each gets its own part.
   */
  scatter<T extends TypedArray>(values: T | null, root?: number): Promise<T>;
  scatter<T>(values: T[] | null, root?: number): Promise<T>;
  scatter(values: unknown, root = 0): Promise<unknown> {
    const bad = this.#badRoot(root);
    if (bad !== null) return Promise.reject(bad);
    try {
      const parts = this.rank === root ? partsOf(values, this.size, 'scatter') : null;
      return this.#run('scatter', () => this.#engine.scatter(parts, root));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** values[i] (or a typed array's i-th equal slice) goes to team rank i; returns what each sent here. */
  alltoall<T extends TypedArray>(values: T): Promise<T>;
  alltoall<T>(values: T[]): Promise<T[]>;
  alltoall(values: unknown): Promise<unknown> {
    try {
      const parts = partsOf(values, this.size, 'alltoall');
      return this.#run('alltoall', () => this.#engine.alltoall(parts));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Collective over this team, like MPI_Comm_split: members with the same
   * `color` form a new team, ordered by `key` (default: their rank here), then
   * by rank here. A negative color (MPI_UNDEFINED) joins no team: null.
   * Synchronous: it returns the team itself.
   */
  split(color: number, key: number = this.rank): Team | null {
    if (!Number.isInteger(color)) throw new TypeError(`split: color must be an integer, not ${String(color)}`);
    if (!Number.isInteger(key)) throw new TypeError(`split: key must be an integer, not ${String(key)}`);
    const slots = this.#ctx.slots;
    const all = this.#runSync('split', () => this.#engine.gather([color, key, slots.next], null)) as Array<[number, number, number]>;
    if (color < 0) return null;
    const { members, slot } = splitPlan(all, color, slots.count);
    slots.next = slot + 1;
    return new Team(this.#ctx, members.map((r) => this.worldRanks[r]!), slot);
  }
}
