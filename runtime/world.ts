/**
 * The World a rank sees: its rank and size, the symmetric heap with one-sided put/get/atomics,
 * point-to-point messages, barrier and finalize. Each peer is reached through the endpoint the
 * transport registry bound for it at init (runtime/bootstrap.ts); the World checks every call
 * (ranges, types, ranks) before a byte moves and then calls the endpoint, never a transport.
 */
import { MprunError, isMprunError } from '../core/errors.js';
import { dtypeOf } from '../core/codec.js';
import { isTypedArray, isTypedArrayCtor, type AtomicArray, type Comparison, type TypedArray, type TypedArrayConstructor } from '../core/types.js';
import { native } from '../native/index.js';
import { flushAll, type AtomicOpCode, type Endpoint, type TransportInstance } from '../transports/endpoint.js';
import { openSharedMemory, type AgentLinks, type SharedMemory } from '../transports/registry.js';
import { checkAtomicValue, comparator, RemoteAtomics } from './atomics.js';
import type { RuntimeConfig } from './config.js';
import type { Wireup } from './wireup.js';
import { SymmetricHeap } from './heap.js';
import { ANY_SOURCE, ANY_TAG, type Message, type Messenger } from './p2p.js';
import type { Waiter } from './wait.js';
import { Team, type TeamContext } from './team.js';
import { settledSteps, type CollectiveEngine, type Steps } from './coll/engine.js';
import { teamContext, type WorldParts } from './world-parts.js';
import { Checkpointer, checkpointConfig, type CheckpointInfo, type CheckpointOptions } from './checkpoint.js';

/** The ranks of one node, as world ranks. */
export interface LocalGroup {
  readonly rank: number;
  readonly size: number;
}

/** World team slots: 0 is the world, 1 the node's ranks (team('shared')). */
const WORLD_SLOT = 0;
const SHARED_SLOT = 1;

export class World extends Team {
  readonly local: LocalGroup;
  readonly jobId: string;
  readonly config: RuntimeConfig;
  readonly atomics: RemoteAtomics;
  /** Shared variables and semaphores across every node (transports/dsm). */
  readonly dsm: SharedMemory;

  readonly #ctrl: TeamContext['ctrl'];
  readonly #ownsCtrl: boolean;
  readonly #heap: SymmetricHeap;
  readonly #endpoints: readonly Endpoint[];
  readonly #waiter: Waiter;
  readonly #messenger: Messenger;
  readonly #wireup: Wireup;
  readonly #shared: Team;
  readonly #links: AgentLinks | null;
  readonly #transports: readonly TransportInstance[];
  /** Endpoints with puts that complete only at a flush (quiet and barrier flush them). */
  readonly #unflushed = new Set<Endpoint>();
  /** Endpoints that had an atomic in flight since the last fence: it orders them too (quiet and barriers do not wait for them). */
  readonly #atomicsSinceFence = new Set<Endpoint>();
  /** The flushes of quiet() calls still on their way: a later quiet() (and barrier) waits for them too. */
  #flushing: Promise<unknown> | null = null;
  /** Peer views of each allocation, by world rank (null: not made yet). */
  readonly #views = new WeakMap<TypedArray, (TypedArray | null)[]>();
  #finalized = false;
  /** Allocations made so far (each rank's count must agree at every alloc). */
  #allocs = 0;
  readonly #ckpt: Checkpointer;

  /** @internal use init() */
  constructor(parts: WorldParts) {
    const { place: env, config, ctrl, cards, endpoints, waiter } = parts;
    const me = cards[env.rank]!;
    const localRankOf = (w: number): number => (cards[w]!.node === me.node ? cards[w]!.localRank : -1);
    // The teams' liveness is this world's; `self` is set once super() has run.
    let self: World | null = null;
    const ctx = teamContext(
      parts,
      localRankOf,
      () => {
        if (self !== null) self.#live();
      },
      () => self !== null && !self.#finalized,
      SHARED_SLOT + 1,
    );
    super(ctx, cards.map((_, r) => r), WORLD_SLOT);
    self = this;
    this.#shared = new Team(ctx, cards.map((_, r) => r).filter((r) => localRankOf(r) >= 0), SHARED_SLOT);
    this.local = { rank: env.localRank, size: env.localSize };
    this.jobId = env.jobId;
    this.config = config;
    this.#ctrl = ctrl;
    this.#ownsCtrl = parts.ownsCtrl;
    this.#heap = new SymmetricHeap(parts.heap);
    this.#endpoints = endpoints;
    this.#wireup = parts.wireup;
    this.#waiter = waiter;
    this.#messenger = parts.messenger;
    this.#links = parts.links;
    this.#transports = parts.transports;
    this.atomics = new RemoteAtomics(this);
    this.dsm = openSharedMemory(parts.links, {
      rank: env.rank,
      nodeIndex: env.nodeIndex,
      nnodes: env.nnodes,
      secret: env.secret,
      agent: env.agent,
      allgather: (v) => this.allgather(v) as Promise<unknown[]>,
      barrier: () => super.barrier(),
      nodeBcast: (v) => this.#shared.bcast(v, 0),
      nodeRank: this.#shared.rank,
    });
    this.#ckpt = new Checkpointer(
      {
        rank: env.rank,
        size: env.size,
        allreduce: (buf, op) => this.allreduce(buf, op),
        bcast: (v, root) => this.bcast(v, root),
        allgather: <T>(v: T) => this.allgather(v) as Promise<T[]>,
      },
      checkpointConfig(),
      env.secret,
    );
  }

  // --- checkpoint/restart (runtime/checkpoint.ts) ---------------------------------
  /** Registers a typed array to checkpoint under `name` (every rank, the same names in the same order). */
  protect(name: string, array: TypedArray): void {
    this.#live();
    this.#ckpt.protect(name, array);
  }

  /** Collective: fills the protected arrays from the newest intact committed epoch of the job (mprun --job NAME) and returns it; null on a fresh start. */
  restore(): Promise<number | null> {
    return this.#checkpointCall('restore()', () => this.#ckpt.restore());
  }

  /**
   * Collective: makes the protected arrays durable on the checkpoint targets as a new epoch; resolves once
   * committed. With `{ async: true }` it returns once they are copied aside; the next checkpoint,
   * checkpointWait() or finalize commits that epoch.
   */
  checkpoint(opts: CheckpointOptions = {}): Promise<CheckpointInfo> {
    return this.#checkpointCall('checkpoint()', () => this.#ckpt.checkpoint(opts));
  }

  /** Collective: commits a pending asynchronous checkpoint (null when none is pending). */
  checkpointWait(): Promise<CheckpointInfo | null> {
    return this.#checkpointCall('checkpointWait()', () => this.#ckpt.checkpointWait());
  }

  // --- symmetric heap --------------------------------------------------------

  /**
   * Collective: allocates `length` elements of `Type` on the symmetric heap of every rank, at the same
   * offset everywhere. Zero-filled. Like shmem_malloc it ends with a barrier, so peers may put into it at once.
   */
  alloc<T extends TypedArray>(Type: TypedArrayConstructor<T>, length: number): T {
    this.#live();
    if (!isTypedArrayCtor(Type)) throw new TypeError('alloc expects a typed array constructor such as Float64Array');
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`alloc length must be a non-negative integer, not ${length}`);
    const offset = this.#heap.reserve(length * Type.BYTES_PER_ELEMENT);
    // Every rank must ask for the same allocation in the same order, or the
    // same offset would name different memory on different ranks and puts
    // would land in the wrong array. One gather checks it (and, as every rank
    // has reserved before it contributes, is the barrier shmem_malloc ends with).
    const mine: AllocRequest = [this.#allocs, Type.name, length, offset];
    const all = this.allgatherSync(mine, 'alloc');
    checkAllocsAgree(all, this.rank);
    this.#allocs++;
    const view = new Type(this.#heap.buffer, offset, length);
    this.#views.set(view, new Array<TypedArray | null>(this.size).fill(null));
    return view;
  }

  /** Bytes of the symmetric heap in use and in all. */
  heapUsage(): { used: number; size: number } {
    return { used: this.#heap.used, size: this.#heap.buffer.byteLength };
  }

  #allocation(a: TypedArray, what: string): (TypedArray | null)[] {
    const views = isTypedArray(a) ? this.#views.get(a) : undefined;
    if (views === undefined) throw new TypeError(`${what}: the array is not a symmetric allocation of this world (use world.alloc)`);
    return views;
  }

  #endpoint(pe: number): Endpoint {
    if (!Number.isInteger(pe) || pe < 0 || pe >= this.size) throw new RangeError(`pe ${pe} is not a rank of this world (size ${this.size})`);
    return this.#endpoints[pe]!;
  }

  /** A view of `pe`'s copy of `a` for direct loads and stores, or null when it cannot be mapped. */
  ptr<T extends TypedArray>(a: T, pe: number): T | null {
    this.#live();
    const views = this.#allocation(a, 'ptr');
    const ep = this.#endpoint(pe);
    let v = views[pe];
    if (v === null || v === undefined) {
      const mem = ep.map();
      if (mem === null) return null;
      const Ctor = a.constructor as TypedArrayConstructor<T>;
      v = new Ctor(mem, a.byteOffset, a.length);
      views[pe] = v;
    }
    return v as T;
  }

  #checkRange(a: TypedArray, count: number, offset: number, what: string): void {
    if (!Number.isInteger(offset) || offset < 0) throw new RangeError(`${what}: offset must be a non-negative integer, not ${offset}`);
    if (offset + count > a.length) throw new RangeError(`${what}: elements [${offset}, ${offset + count}) are outside the allocation of ${a.length}`);
  }

  #checkSameType(a: TypedArray, b: unknown, what: string): void {
    if (!isTypedArray(b) || b.constructor !== a.constructor) throw new TypeError(`${what}: expected a ${a.constructor.name}, got ${describe(b)}`);
  }

  /** Copies `src` into `pe`'s `a[offset ...]`; `src` may be reused on return. */
  put<T extends TypedArray>(a: T, src: T, pe: number, offset = 0): void {
    this.#put(a, src, pe, offset, 'put');
  }

  /**
   * As put(), but `src` must stay unchanged until the next quiet() (or
   * barrier) returns: OpenSHMEM's put_nbi, MPI_Put's rule. Over a network
   * (UCX) successive puts then overlap instead of each waiting for its data
   * to leave; elsewhere it is put().
   */
  putNbi<T extends TypedArray>(a: T, src: T, pe: number, offset = 0): void {
    this.#put(a, src, pe, offset, 'putNbi');
  }

  #put(a: TypedArray, src: TypedArray, pe: number, offset: number, what: 'put' | 'putNbi'): void {
    this.#live();
    this.#checkSameType(a, src, what);
    this.#checkRange(a, src.length, offset, what);
    this.#allocation(a, what);
    const ep = this.#endpoint(pe);
    const at = a.byteOffset + offset * a.BYTES_PER_ELEMENT;
    if (what === 'putNbi' && ep.putNbi !== undefined) ep.putNbi(at, src);
    else ep.put(at, src);
    if (!ep.caps.putCompleteOnReturn) this.#unflushed.add(ep);
  }

  /** Copies `pe`'s `a[offset .. offset + dst.length)` into `dst`. */
  async get<T extends TypedArray>(dst: T, a: T, pe: number, offset = 0): Promise<T> {
    this.#live();
    this.#checkSameType(a, dst, 'get');
    this.#checkRange(a, dst.length, offset, 'get');
    this.#allocation(a, 'get');
    const done = this.#endpoint(pe).get(a.byteOffset + offset * a.BYTES_PER_ELEMENT, dst);
    if (done !== undefined) await this.#waiter.settle(done, () => `get of ${dst.byteLength} bytes from rank ${pe}`);
    return dst;
  }

  /**
   * Completes every put issued so far (OpenSHMEM quiet). Puts to node peers
   * complete on return already; others when their endpoint's flush answers.
   */
  async quiet(): Promise<void> {
    this.#live();
    native().fence();
    if (this.#unflushed.size !== 0) {
      this.#flushing = flushAll(this.#unflushed, this.#flushing) ?? null;
      this.#unflushed.clear();
    }
    const flushing = this.#flushing;
    if (flushing === null) return;
    try {
      await this.#waiter.settle(flushing, () => 'quiet (flushing puts to other nodes)');
    } finally {
      if (this.#flushing === flushing) this.#flushing = null;
    }
  }

  /** Waits for every member; puts issued before it are complete everywhere, shared variables released before and acquired after it. */
  override barrier(): Promise<void> {
    if (this.#unflushed.size === 0 && this.#flushing === null && !this.dsm.active) return super.barrier();
    // Its place among the world's collectives is taken now: one called after it ran first while
    // it awaited its quiet (a mismatch across ranks, or a hang).
    return this.queued('barrier', (engine) => this.#barrierAfterQuiet(engine));
  }

  /**
   * As barrier(), blocking this thread (Team.barrierSync). Puts to other
   * nodes complete asynchronously: after them, and while shared variables are
   * in use, it refuses; `await world.quiet()` first, or use barrier().
   */
  override barrierSync(): void {
    this.#live();
    if (this.#unflushed.size !== 0 || this.#flushing !== null || this.dsm.active) {
      throw new MprunError('ERR_MPRUN_ARG', `barrierSync() on rank ${this.rank} with ${this.dsm.active ? 'shared variables in use' : 'puts to other nodes not yet complete'}: their completion is asynchronous; await world.quiet() first, or use await world.barrier()`);
    }
    super.barrierSync();
  }

  *#barrierAfterQuiet(engine: CollectiveEngine): Steps<void> {
    yield* settledSteps(this.quiet().then(() => this.dsm.releaseAll()));
    yield* engine.barrier();
    yield* settledSteps(this.dsm.acquireAll());
  }

  /** Orders puts to each peer (OpenSHMEM fence): shared memory's and a link's are; UCX's endpoints order theirs (Endpoint.fence). */
  fence(): void {
    this.#live();
    native().fence();
    for (const ep of this.#unflushed) ep.fence?.();
    for (const ep of this.#atomicsSinceFence) if (!this.#unflushed.has(ep)) ep.fence?.();
    this.#atomicsSinceFence.clear();
  }

  /** @internal one atomic on `pe`'s element, after every check (RemoteAtomics). */
  atomic(op: AtomicOpCode, arr: AtomicArray, index: number, pe: number, a: number | bigint, b: number | bigint, what: string): Promise<number | bigint> | number | bigint {
    this.#live();
    if (!(arr instanceof Int32Array) && !(arr instanceof BigInt64Array)) throw new TypeError(`${what}: atomics work on Int32Array and BigInt64Array, not ${describe(arr)}`);
    this.#allocation(arr, what);
    if (!Number.isInteger(index) || index < 0 || index >= arr.length) throw new RangeError(`${what}: index ${index} is outside the allocation of ${arr.length}`);
    checkAtomicValue(arr, a, what);
    checkAtomicValue(arr, b, what);
    const ep = this.#endpoint(pe);
    const r = ep.atomic(op, dtypeOf(arr), arr.byteOffset + index * arr.BYTES_PER_ELEMENT, a, b);
    if (typeof r !== 'object') return r;
    if (ep.fence !== undefined) this.#atomicsSinceFence.add(ep);
    return this.#waiter.settle(r, () => `${what} on rank ${pe}`);
  }

  /** Waits until this rank's `arr[index] <cmp> value` holds (OpenSHMEM wait_until). */
  async waitUntil<T extends TypedArray>(arr: T, index: number, cmp: Comparison, value: T extends BigInt64Array | BigUint64Array ? bigint : number): Promise<void> {
    this.#live();
    this.#allocation(arr, 'waitUntil');
    if (!Number.isInteger(index) || index < 0 || index >= arr.length) throw new RangeError(`waitUntil: index ${index} is outside the allocation of ${arr.length}`);
    const test = comparator(cmp);
    const atomic = arr instanceof Int32Array || arr instanceof BigInt64Array || arr instanceof Uint32Array || arr instanceof BigUint64Array || arr instanceof Int16Array || arr instanceof Uint16Array || arr instanceof Int8Array || arr instanceof Uint8Array;
    if ((typeof arr[0] === 'bigint') !== (typeof value === 'bigint')) throw new TypeError(`waitUntil: value must be a ${typeof arr[0] === 'bigint' ? 'bigint' : 'number'}`);
    const read = atomic ? () => Atomics.load(arr as Int32Array, index) : () => (arr as Float64Array)[index]!;
    const ready = (): boolean => test(read(), value as number);
    if (ready()) return;
    await this.#waiter.waitForMemory(ready, () => `waitUntil(index ${index} ${cmp} ${String(value)}) on this rank's memory`);
  }

  // --- messages ------------------------------------------------------------

  /** Sends any msgpack-able value (typed arrays as raw bytes); resolves when `data` may be reused. */
  send(dest: number, data: unknown, tag = 0): Promise<void> {
    // Misuse rejects the promise (never a synchronous throw past .catch()).
    try {
      this.#live();
      return this.#messenger.sends.send(dest, data, tag);
    } catch (e) {
      return Promise.reject(sendError(e, dest, tag));
    }
  }

  /** As send(), blocking this thread until `data` may be reused: no promise, for tight loops (README, "Synchronous forms"). */
  sendSync(dest: number, data: unknown, tag = 0): void {
    this.#live();
    try {
      this.#messenger.sends.sendSync(dest, data, tag);
    } catch (e) {
      throw sendError(e, dest, tag);
    }
  }

  /** Receives the first message matching `source` and `tag` (ANY_SOURCE / ANY_TAG by default). */
  recv<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG): Promise<Message<T>> {
    try {
      this.#live();
      return this.#messenger.recv<T>(source, tag);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** As recv(), blocking this thread until the message is here (see sendSync). */
  recvSync<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG): Message<T> {
    this.#live();
    return this.#messenger.recvSync<T>(source, tag);
  }

  /**
   * Receives into `buf` (MPI_Recv): a message of the same typed-array type is written into it
   * with no allocation, and `data` is the filled prefix (`buf` itself when the message fills
   * it); one of another type, or longer than `buf`, fails with ERR_MPRUN_TRUNCATE.
   */
  recvInto<T extends TypedArray>(buf: T, source: number = ANY_SOURCE, tag: number = ANY_TAG): Promise<Message<T>> {
    try {
      this.#live();
      checkInto(buf, 'recvInto');
      return this.#messenger.recvInto(buf, source, tag);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** As recvInto(), blocking this thread until the message is here (see sendSync). */
  recvIntoSync<T extends TypedArray>(buf: T, source: number = ANY_SOURCE, tag: number = ANY_TAG): Message<T> {
    this.#live();
    checkInto(buf, 'recvIntoSync');
    return this.#messenger.recvIntoSync(buf, source, tag);
  }

  /** Whether a matching message has arrived, without receiving it. */
  probe(source: number = ANY_SOURCE, tag: number = ANY_TAG): { source: number; tag: number } | null {
    this.#live();
    return this.#messenger.probe(source, tag);
  }

  // --- teams -----------------------------------------------------------------------

  /** A predefined team: 'shared' is the ranks of this node (OpenSHMEM's TEAM_SHARED), 'world' the world. */
  team(name: 'shared' | 'world'): Team {
    if (name === 'shared') return this.#shared;
    if (name === 'world') return this;
    throw new TypeError(`team() knows 'shared' and 'world', not ${String(name)}`);
  }

  /** Aborts the whole job with `code` (MPI_Abort): mprun (or the PMIx server) stops every rank. */
  abort(code = 1, message = ''): never {
    const text = message || `rank ${this.rank} called abort(${code})`;
    if (this.#wireup.kind === 'singleton') process.stderr.write(`mprun: ${text}\n`);
    else this.#wireup.abort(code, text);
    // The launcher kills every rank; exiting with the code is the fallback.
    process.exit(code);
  }

  get finalized(): boolean {
    return this.#finalized;
  }

  /** Runs an API call whose waits hang reports should name it by (the collectives inside checkpoint(), ...). */
  async #within<T>(call: string, op: () => Promise<T>): Promise<T> {
    const outer = this.#waiter.context;
    this.#waiter.context = call;
    try {
      return await op();
    } finally {
      this.#waiter.context = outer;
    }
  }

  /** A checkpoint API call: refused after finalize, its waits named by `call`. */
  async #checkpointCall<T>(call: string, op: () => Promise<T>): Promise<T> {
    this.#live();
    return this.#within(call, op);
  }

  /** Collective: waits for every rank, then releases this rank's resources. */
  finalize(): Promise<void> {
    if (this.#finalized) return Promise.resolve();
    return this.#within('finalize()', () => this.#finalize());
  }

  async #finalize(): Promise<void> {
    // A pending asynchronous checkpoint is committed before the job may end.
    await this.#ckpt.close();
    await this.barrier();
    this.#finalized = true;
    await this.#wireup.finalize();
    this.#links?.close();
    this.dsm.close();
    for (const ep of this.#endpoints) ep.close();
    for (const t of this.#transports) t.close();
    if (this.#ownsCtrl) this.#ctrl.unmap();
  }

  #live(): void {
    if (this.#finalized) throw new MprunError('ERR_MPRUN_FINALIZED', 'the world is finalized');
  }

  /** The endpoint serving each rank, by name (for `MPRUN_DEBUG` and tests). */
  transports(): string[] {
    return this.#endpoints.map((e) => e.name);
  }
}

/** One rank's alloc call: its ordinal, type name, length and heap offset. */
type AllocRequest = [number, string, number, number];

/** Throws, naming every rank and what it asked for, unless all ranks made the same alloc call. */
function checkAllocsAgree(all: AllocRequest[], me: number): void {
  const [n0, type0, len0, off0] = all[0]!;
  if (all.every(([n, t, l, o]) => n === n0 && t === type0 && l === len0 && o === off0)) return;
  const what = all.map(([n, t, l, o], r) => `rank ${r}: alloc #${n + 1} ${t}(${l}) at heap offset ${o}`).join('; ');
  throw new MprunError('ERR_MPRUN_COLLECTIVE_MISMATCH', `collective mismatch in alloc on rank ${me}: every rank must allocate the same type and length in the same order (${what})`);
}

/** The error a send fails with: misuse as it is, anything else as data that cannot be encoded. */
function sendError(e: unknown, dest: number, tag: number): unknown {
  return isMprunError(e) || e instanceof RangeError || e instanceof TypeError ? e : new TypeError(`send to rank ${String(dest)} (tag ${String(tag)}): the data cannot be encoded: ${e instanceof Error ? e.message : String(e)}`);
}

function checkInto(buf: unknown, what: string): void {
  if (!isTypedArray(buf)) throw new TypeError(`${what} needs a typed array to receive into, not ${describe(buf)}`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}
