/**
 * The World a rank sees: its rank and size, the symmetric heap with one-sided
 * put/get/atomics, point-to-point messages, barrier and finalize. Each peer is
 * reached by the transport the selector picked at init; for ranks of this node
 * that is xpmem (their heaps attached once, a put is one TypedArray.set into
 * the attached memory: one copy, no syscall, no work for the target).
 */
import { hostname } from 'node:os';
import { native } from '../native/index.js';
import * as xpmem from '../transports/xpmem/index.js';
import { allocShared } from '../transports/shm/arena.js';
import { ControlSegment, WAKE_HEAP } from '../transports/shm/control.js';
import { NodeQueues } from '../transports/shm/queue.js';
import { AgentLink, outputQueued, pumpAll } from '../transports/dsm/client.js';
import { AMO, DsmFrame } from '../transports/dsm/frames.js';
import { isBigDtype } from '../transports/dsm/atomic.js';
import { SharedMemory } from '../transports/dsm/shared.js';
import { dtypeOf } from './codec.js';
import { readConfig, type RuntimeConfig } from './config.js';
import { ControlClient } from './control.js';
import { isMprunError, MprunError } from './errors.js';
import { SymmetricHeap } from './heap.js';
import { ANY_SOURCE, ANY_TAG, Messenger, type Message } from './p2p.js';
import { BUILTIN_TRANSPORTS, selectTransport } from './select.js';
import { isTypedArray, isTypedArrayCtor, type AtomicArray, type AtomicValue, type Comparison, type TypedArray, type TypedArrayConstructor } from './types.js';
import { Waiter } from './wait.js';
import { Team, type TeamContext } from './team.js';
import { Checkpointer, checkpointConfig, type CheckpointInfo, type CheckpointOptions } from './checkpoint.js';

/** Above this many bytes a put ends with a full fence: memcpy uses non-temporal stores there. */
const NT_STORE_BYTES = 256 * 1024;

interface BusinessCard {
  pid: number;
  node: string;
  localRank: number;
  heapSegid: string;
  heapBytes: number;
  collSegid: string;
  collBytes: number;
  /** This node's index in the job, and its agent's data address (null for a one-node job). */
  nodeIndex: number;
  agent: string | null;
}

interface Peer {
  rank: number;
  pid: number;
  localRank: number;
  node: string;
  nodeIndex: number;
  transport: string;
  /** The connection to the peer's node agent, for a peer on another node. */
  link: AgentLink | null;
  /** The peer's heap, mapped here; null when the peer is not reachable by mapping. */
  heap: ArrayBuffer | null;
  /** The peer's collective arena (team scratch), mapped here. */
  coll: ArrayBuffer | null;
  attachments: Array<{ detach(): void }>;
}

/** The ranks of one node, as world ranks. */
export interface LocalGroup {
  readonly rank: number;
  readonly size: number;
}

export interface JobEnvironment {
  rank: number;
  size: number;
  localRank: number;
  localSize: number;
  controller: string | null;
  secret: string;
  controlFd: number | null;
  jobId: string;
  nodeIndex: number;
  nnodes: number;
  /** This node's agent's data address, for the ranks of other nodes and shared variables. */
  agent: string | null;
}

export function jobEnvironment(): JobEnvironment | null {
  const e = process.env;
  if (e.MPRUN_RANK === undefined) return null;
  const num = (name: string): number => {
    const v = Number(e[name]);
    if (!Number.isInteger(v) || v < 0) throw new MprunError('ERR_MPRUN_ARG', `${name}=${String(e[name])} is not a valid value; was this process started by mprun?`);
    return v;
  };
  return {
    rank: num('MPRUN_RANK'),
    size: num('MPRUN_SIZE'),
    localRank: num('MPRUN_LOCAL_RANK'),
    localSize: num('MPRUN_LOCAL_SIZE'),
    controller: e.MPRUN_CONTROLLER ?? null,
    secret: e.MPRUN_SECRET ?? '',
    controlFd: e.MPRUN_CTRL_FD === undefined ? null : num('MPRUN_CTRL_FD'),
    jobId: e.MPRUN_JOBID ?? 'singleton',
    nodeIndex: e.MPRUN_NODE_INDEX === undefined ? 0 : num('MPRUN_NODE_INDEX'),
    nnodes: e.MPRUN_NNODES === undefined ? 1 : num('MPRUN_NNODES'),
    agent: e.MPRUN_AGENT_ADDR ?? null,
  };
}

type Atom = Int32Array | BigInt64Array;

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

  readonly #ctrl: ControlSegment;
  readonly #ownsCtrl: boolean;
  readonly #heap: SymmetricHeap;
  readonly #peers: Peer[];
  readonly #waiter: Waiter;
  readonly #messenger: Messenger;
  readonly #client: ControlClient | null;
  readonly #localRanks: number[];
  readonly #shared: Team;
  /** Connections to other nodes' agents (empty on a one-node job). */
  readonly #links: AgentLink[];
  /** Peer views of each allocation, by world rank (null: not mappable). */
  readonly #views = new WeakMap<TypedArray, (TypedArray | null)[]>();
  #finalized = false;
  /** Allocations made so far (each rank's count must agree at every alloc). */
  #allocs = 0;
  readonly #ckpt: Checkpointer;

  /** @internal use init() */
  constructor(parts: {
    env: JobEnvironment;
    config: RuntimeConfig;
    ctrl: ControlSegment;
    ownsCtrl: boolean;
    heap: ArrayBuffer;
    peers: Peer[];
    client: ControlClient | null;
    waiter: Waiter;
    links: AgentLink[];
  }) {
    const { env, config, ctrl, peers, waiter } = parts;
    // The teams' liveness is this world's; `self` is set once super() has run.
    let self: World | null = null;
    const ctx: TeamContext = {
      ctrl,
      waiter,
      checkLive: () => {
        if (self !== null) self.#live();
      },
      worldRank: env.rank,
      localRankOf: (w) => peers[w]!.localRank,
      nodeOf: (w) => peers[w]!.nodeIndex,
      messenger: () => self!.#messenger,
      arenaOf: (w) => {
        const a = peers[w]!.coll;
        if (a === null) throw new MprunError('ERR_MPRUN_UNSUPPORTED', `rank ${w}'s collective arena is not mapped here`);
        return a;
      },
      bankBytes: config.collBankBytes,
      chunkBytes: config.collChunkBytes,
      pollNs: config.collPollNs,
      slots: { next: SHARED_SLOT + 1, count: config.teamSlots },
    };
    super(ctx, peers.map((p) => p.rank), WORLD_SLOT);
    self = this;
    const me = peers[env.rank]!;
    this.#shared = new Team(ctx, peers.filter((p) => p.node === me.node).map((p) => p.rank), SHARED_SLOT);
    this.local = { rank: env.localRank, size: env.localSize };
    this.jobId = env.jobId;
    this.config = config;
    this.#ctrl = ctrl;
    this.#ownsCtrl = parts.ownsCtrl;
    this.#heap = new SymmetricHeap(parts.heap);
    this.#peers = parts.peers;
    this.#client = parts.client;
    this.#localRanks = parts.peers.filter((p) => p.localRank >= 0).sort((a, b) => a.localRank - b.localRank).map((p) => p.rank);
    this.#waiter = waiter;
    const localOfWorld = parts.peers.map((p) => p.localRank);
    const queues = new NodeQueues(ctrl, env.localRank);
    this.#links = parts.links;
    const remote = parts.links.length === 0 ? null : {
      send: (dest: number, tag: number, dtype: number, payload: TypedArray): void => {
        parts.peers[dest]!.link!.post(DsmFrame.MSG, { target: dest, id: env.rank, arg: tag, aux: dtype }, new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength));
      },
    };
    this.#messenger = new Messenger(env.rank, env.size, queues, this.#waiter, config.eagerLimit, this.#localRanks, localOfWorld, config.recvPollNs, remote);
    // A rank waiting on shared memory must let its event loop read replies from other nodes.
    waiter.network(() => outputQueued() || parts.links.some((l) => l.waiting), pumpAll);
    this.atomics = new RemoteAtomics(this);
    const linkOfNode = new Map(parts.links.map((l) => [l.node, l]));
    this.dsm = new SharedMemory({
      rank: env.rank,
      nodeIndex: env.nodeIndex,
      nnodes: env.nnodes,
      secret: env.secret,
      agent: env.agent,
      linkOf: (n) => linkOfNode.get(n) ?? null,
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

  /**
   * Collective: fills the protected arrays from the newest intact committed
   * epoch of the job (mprun --job NAME) and returns it; null on a fresh start.
   */
  restore(): Promise<number | null> {
    try {
      this.#live();
      return this.#within('restore()', () => this.#ckpt.restore());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Collective: makes the protected arrays durable on the checkpoint targets as
   * a new epoch; resolves once committed. With `{ async: true }` it returns once
   * they are copied aside; the next checkpoint, checkpointWait() or finalize
   * commits that epoch.
   */
  checkpoint(opts: CheckpointOptions = {}): Promise<CheckpointInfo> {
    try {
      this.#live();
      return this.#within('checkpoint()', () => this.#ckpt.checkpoint(opts));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Collective: commits a pending asynchronous checkpoint (null when none is pending). */
  checkpointWait(): Promise<CheckpointInfo | null> {
    try {
      this.#live();
      return this.#within('checkpointWait()', () => this.#ckpt.checkpointWait());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // --- symmetric heap --------------------------------------------------------

  /**
   * Collective: allocates `length` elements of `Type` on the symmetric heap of
   * every rank, at the same offset everywhere. Zero-filled. Like shmem_malloc
   * it ends with a barrier, so peers may put into it as soon as it returns.
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

  #peer(pe: number): Peer {
    if (!Number.isInteger(pe) || pe < 0 || pe >= this.size) throw new RangeError(`pe ${pe} is not a rank of this world (size ${this.size})`);
    return this.#peers[pe]!;
  }

  #peerView<T extends TypedArray>(a: T, pe: number, what: string): T {
    const views = this.#allocation(a, what);
    const peer = this.#peer(pe);
    let v = views[pe];
    if (v === null || v === undefined) {
      if (peer.heap === null) throw new MprunError('ERR_MPRUN_UNSUPPORTED', `${what}: rank ${pe} is reached by ${peer.transport}, which cannot map its memory`);
      const Ctor = a.constructor as TypedArrayConstructor<T>;
      v = new Ctor(peer.heap, a.byteOffset, a.length);
      views[pe] = v;
    }
    return v as T;
  }

  /** A view of `pe`'s copy of `a` for direct loads and stores, or null when it cannot be mapped. */
  ptr<T extends TypedArray>(a: T, pe: number): T | null {
    this.#live();
    this.#allocation(a, 'ptr');
    if (this.#peer(pe).heap === null) return null;
    return this.#peerView(a, pe, 'ptr');
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
    this.#live();
    this.#checkSameType(a, src, 'put');
    this.#checkRange(a, src.length, offset, 'put');
    const link = this.#peer(pe).link;
    if (link !== null) {
      this.#allocation(a, 'put');
      link.put(pe, a.byteOffset + offset * a.BYTES_PER_ELEMENT, new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
      return;
    }
    const dst = this.#peerView(a, pe, 'put');
    (dst as Float64Array).set(src as unknown as Float64Array, offset);
    if (src.byteLength >= NT_STORE_BYTES) native().fence();
    this.#notify(pe);
  }

  /** Copies `pe`'s `a[offset .. offset + dst.length)` into `dst`. */
  async get<T extends TypedArray>(dst: T, a: T, pe: number, offset = 0): Promise<T> {
    this.#live();
    this.#checkSameType(a, dst, 'get');
    this.#checkRange(a, dst.length, offset, 'get');
    const link = this.#peer(pe).link;
    if (link !== null) {
      this.#allocation(a, 'get');
      await link.get(pe, a.byteOffset + offset * a.BYTES_PER_ELEMENT, new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength));
      return dst;
    }
    const src = this.#peerView(a, pe, 'get');
    (dst as Float64Array).set((src as Float64Array).subarray(offset, offset + dst.length));
    return dst;
  }

  /**
   * Completes every put issued so far (OpenSHMEM quiet). Puts to node peers
   * complete on return already; puts to other nodes when their agent answers
   * a flush sent behind them.
   */
  async quiet(): Promise<void> {
    this.#live();
    native().fence();
    if (this.#links.length > 0) await Promise.all(this.#links.map((l) => l.flush()));
  }

  /**
   * Waits for every member; puts issued before it are complete everywhere, and
   * shared variables are released before and acquired after it.
   */
  override barrier(): Promise<void> {
    if (this.#links.length === 0 && !this.dsm.active) return super.barrier();
    return this.#barrierAcrossNodes();
  }

  async #barrierAcrossNodes(): Promise<void> {
    await this.quiet();
    await this.dsm.releaseAll();
    await super.barrier();
    await this.dsm.acquireAll();
  }

  /** Orders puts to each peer (OpenSHMEM fence): stores to shared memory are already ordered here. */
  fence(): void {
    this.#live();
    native().fence();
  }

  /** Rings `pe`'s doorbell: it may be waiting for what we just wrote. */
  #notify(pe: number): void {
    const l = this.#peers[pe]!.localRank;
    if (l >= 0) this.#ctrl.ring(l, WAKE_HEAP);
  }

  /** @internal the view of `pe`'s element for an atomic. */
  atomicTarget(arr: AtomicArray, index: number, pe: number, value: unknown, what: string): Atom {
    this.#live();
    if (!(arr instanceof Int32Array) && !(arr instanceof BigInt64Array)) throw new TypeError(`${what}: atomics work on Int32Array and BigInt64Array, not ${describe(arr)}`);
    this.#allocation(arr, what);
    if (!Number.isInteger(index) || index < 0 || index >= arr.length) throw new RangeError(`${what}: index ${index} is outside the allocation of ${arr.length}`);
    checkAtomicValue(arr, value, what);
    return this.#peerView(arr as Atom, pe, what);
  }

  /** @internal */
  atomicDone(pe: number): void {
    this.#notify(pe);
  }

  /** @internal the connection to `pe`'s agent, when `pe` is on another node. */
  linkOf(pe: number): AgentLink | null {
    return this.#peer(pe).link;
  }

  /** @internal an atomic on `pe`'s element, served by its node agent. */
  remoteAtomic(link: AgentLink, arr: AtomicArray, index: number, pe: number, op: number, a: number | bigint, b: number | bigint): Promise<number | bigint> {
    const dtype = dtypeOf(arr);
    return link.atomic(DsmFrame.AMO, pe, arr.byteOffset + index * arr.BYTES_PER_ELEMENT, op, dtype, a, b, isBigDtype(dtype), false);
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
    await this.#waiter.wait(ready, WAKE_HEAP, () => `waitUntil(index ${index} ${cmp} ${String(value)}) on this rank's memory`);
  }

  // --- messages ------------------------------------------------------------

  /** Sends any msgpack-able value (typed arrays as raw bytes); resolves when `data` may be reused. */
  send(dest: number, data: unknown, tag = 0): Promise<void> {
    // Misuse rejects the promise (never a synchronous throw past .catch()).
    try {
      this.#live();
      return this.#messenger.send(dest, data, tag);
    } catch (e) {
      return Promise.reject(isMprunError(e) || e instanceof RangeError || e instanceof TypeError ? e : new TypeError(`send to rank ${String(dest)} (tag ${String(tag)}): the data cannot be encoded: ${e instanceof Error ? e.message : String(e)}`));
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

  /**
   * Receives into `buf` (MPI_Recv): a message of the same typed-array type is
   * written into it with no allocation, and `data` is the filled prefix. A
   * message of another type, or longer than `buf`, fails with ERR_MPRUN_TRUNCATE.
   */
  recvInto<T extends TypedArray>(buf: T, source: number = ANY_SOURCE, tag: number = ANY_TAG): Promise<Message<T>> {
    try {
      this.#live();
      if (!isTypedArray(buf)) throw new TypeError(`recvInto needs a typed array to receive into, not ${describe(buf)}`);
      return this.#messenger.recvInto(buf, source, tag);
    } catch (e) {
      return Promise.reject(e);
    }
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

  /** Aborts the whole job with `code` (MPI_Abort): mprun stops every rank. */
  abort(code = 1, message = ''): never {
    const text = message || `rank ${this.rank} called abort(${code})`;
    if (this.#client !== null) this.#client.abort(code, text);
    else process.stderr.write(`mprun: ${text}\n`);
    // mprun kills every rank; exiting with the code is the fallback.
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
    if (this.#client !== null) {
      await this.#client.finalize();
      this.#client.close();
    }
    for (const l of this.#links) l.close();
    this.dsm.close();
    for (const p of this.#peers) {
      if (p.rank !== this.rank) for (const a of p.attachments) a.detach();
    }
    if (this.#ownsCtrl) this.#ctrl.unmap();
  }

  #live(): void {
    if (this.#finalized) throw new MprunError('ERR_MPRUN_FINALIZED', 'the world is finalized');
  }

  /** The transport serving each rank (for `MPRUN_DEBUG` and tests). */
  transports(): string[] {
    return this.#peers.map((p) => p.transport);
  }
}

/** One-sided atomics on `pe`'s copy of a symmetric Int32Array or BigInt64Array. */
export class RemoteAtomics {
  readonly #world: World;
  constructor(world: World) {
    this.#world = world;
  }

  /** The connection for an atomic on `pe`, after the same checks as a local one; null for local peers. */
  #remote(arr: AtomicArray, index: number, pe: number, value: unknown, what: string): AgentLink | null {
    const link = this.#world.linkOf(pe);
    if (link !== null) this.#world.atomicTarget(arr, index, this.#world.rank, value, what);
    return link;
  }

  async fetchAdd<A extends AtomicArray>(arr: A, index: number, value: AtomicValue<A>, pe: number): Promise<AtomicValue<A>> {
    const link = this.#remote(arr, index, pe, value, 'fetchAdd');
    if (link !== null) return (await this.#world.remoteAtomic(link, arr, index, pe, AMO.FETCH_ADD, value, value)) as AtomicValue<A>;
    const t = this.#world.atomicTarget(arr, index, pe, value, 'fetchAdd');
    const old = Atomics.add(t as Int32Array, index, value as number);
    this.#world.atomicDone(pe);
    return old as AtomicValue<A>;
  }

  async add<A extends AtomicArray>(arr: A, index: number, value: AtomicValue<A>, pe: number): Promise<void> {
    await this.fetchAdd(arr, index, value, pe);
  }

  async compareSwap<A extends AtomicArray>(arr: A, index: number, expected: AtomicValue<A>, desired: AtomicValue<A>, pe: number): Promise<AtomicValue<A>> {
    const link = this.#remote(arr, index, pe, expected, 'compareSwap');
    if (link !== null) {
      checkAtomicValue(arr, desired, 'compareSwap');
      return (await this.#world.remoteAtomic(link, arr, index, pe, AMO.COMPARE_SWAP, expected, desired)) as AtomicValue<A>;
    }
    const t = this.#world.atomicTarget(arr, index, pe, expected, 'compareSwap');
    checkAtomicValue(arr, desired, 'compareSwap');
    const old = Atomics.compareExchange(t as Int32Array, index, expected as number, desired as number);
    this.#world.atomicDone(pe);
    return old as AtomicValue<A>;
  }

  async swap<A extends AtomicArray>(arr: A, index: number, value: AtomicValue<A>, pe: number): Promise<AtomicValue<A>> {
    const link = this.#remote(arr, index, pe, value, 'swap');
    if (link !== null) return (await this.#world.remoteAtomic(link, arr, index, pe, AMO.SWAP, value, value)) as AtomicValue<A>;
    const t = this.#world.atomicTarget(arr, index, pe, value, 'swap');
    const old = Atomics.exchange(t as Int32Array, index, value as number);
    this.#world.atomicDone(pe);
    return old as AtomicValue<A>;
  }

  async fetch<A extends AtomicArray>(arr: A, index: number, pe: number): Promise<AtomicValue<A>> {
    const zero = arr instanceof BigInt64Array ? 0n : 0;
    const link = this.#remote(arr, index, pe, zero, 'fetch');
    if (link !== null) return (await this.#world.remoteAtomic(link, arr, index, pe, AMO.FETCH, zero, zero)) as AtomicValue<A>;
    const t = this.#world.atomicTarget(arr, index, pe, arr instanceof BigInt64Array ? 0n : 0, 'fetch');
    return Atomics.load(t as Int32Array, index) as AtomicValue<A>;
  }

  async set<A extends AtomicArray>(arr: A, index: number, value: AtomicValue<A>, pe: number): Promise<void> {
    const link = this.#remote(arr, index, pe, value, 'set');
    if (link !== null) {
      await this.#world.remoteAtomic(link, arr, index, pe, AMO.SET, value, value);
      return;
    }
    const t = this.#world.atomicTarget(arr, index, pe, value, 'set');
    Atomics.store(t as Int32Array, index, value as number);
    this.#world.atomicDone(pe);
  }
}

function checkAtomicValue(arr: AtomicArray, value: unknown, what: string): void {
  if (arr instanceof BigInt64Array) {
    if (typeof value !== 'bigint') throw new TypeError(`${what}: a BigInt64Array takes bigint values, not ${typeof value}`);
  } else if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${what}: an Int32Array takes integer numbers, not ${String(value)}`);
  }
}

function comparator(cmp: Comparison): (a: number, b: number) => boolean {
  switch (cmp) {
    case '==': return (a, b) => a === b;
    case '!=': return (a, b) => a !== b;
    case '<': return (a, b) => a < b;
    case '<=': return (a, b) => a <= b;
    case '>': return (a, b) => a > b;
    case '>=': return (a, b) => a >= b;
    default: throw new TypeError(`comparison must be one of == != < <= > >=, not ${String(cmp)}`);
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

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

// --- init ------------------------------------------------------------------------

let current: World | null = null;
let pending: Promise<World> | null = null;

/** Joins the job (or, outside mprun, makes a world of size 1). Idempotent. */
export function init(): Promise<World> {
  if (current !== null) return Promise.resolve(current);
  pending ??= start().then((w) => (current = w));
  return pending;
}

async function start(): Promise<World> {
  const env = jobEnvironment() ?? { rank: 0, size: 1, localRank: 0, localSize: 1, controller: null, secret: '', controlFd: null, jobId: 'singleton', nodeIndex: 0, nnodes: 1, agent: null };
  const config = readConfig(env.localSize);
  const n = native();
  n.allowPtraceAny();
  let ctrl: ControlSegment;
  let ownsCtrl = false;
  if (env.controlFd !== null) {
    ctrl = ControlSegment.open(env.controlFd);
  } else {
    const made = ControlSegment.create(1, config.queueBytes, config.teamSlots);
    ctrl = made.segment;
    n.closeFd(made.fd);
    ownsCtrl = true;
  }
  if (ctrl.nlocal !== env.localSize) throw new MprunError('ERR_MPRUN_ARG', `the control segment is for ${ctrl.nlocal} ranks, but MPRUN_LOCAL_SIZE is ${env.localSize}`);
  Atomics.store(ctrl.i32, ctrl.pidIndex(env.localRank), process.pid);
  if (ctrl.teamSlots !== config.teamSlots) throw new MprunError('ERR_MPRUN_ARG', `the control segment has ${ctrl.teamSlots} team slots, but MPRUN_TEAM_SLOTS is ${config.teamSlots}; set it for mprun, not per rank`);
  const heap = allocShared(config.heapBytes, 'mprun-heap');
  const coll = allocShared(config.teamSlots * 2 * config.collBankBytes, 'mprun-coll');
  const node = process.env.MPRUN_NODE_NAME ?? hostname();
  const heapSegid = xpmem.make(heap, 0o600);
  // For the node agent, which serves other nodes' puts and gets on it.
  ctrl.publishHeap(env.localRank, heapSegid, heap.byteLength);
  const mine: BusinessCard = {
    pid: process.pid,
    node,
    localRank: env.localRank,
    heapSegid: heapSegid.toString(),
    heapBytes: heap.byteLength,
    collSegid: xpmem.make(coll, 0o600).toString(),
    collBytes: coll.byteLength,
    nodeIndex: env.nodeIndex,
    agent: env.nnodes > 1 ? env.agent : null,
  };

  let cards: BusinessCard[] = [mine];
  let client: ControlClient | null = null;
  if (env.size > 1 || env.controller !== null) {
    if (env.controller === null) throw new MprunError('ERR_MPRUN_ARG', 'MPRUN_CONTROLLER is not set; start the job with mprun');
    client = await ControlClient.connect(env.controller, env.secret, env.rank);
    client.put(`card:${env.rank}`, mine);
    const kv = await client.fence();
    cards = [];
    for (let r = 0; r < env.size; r++) {
      const c = kv[`card:${r}`] as BusinessCard | undefined;
      if (c === undefined) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${r} put no business card`);
      cards.push(c);
    }
    client.unref();
  }

  const self = { rank: env.rank, node };
  // One connection per other node, to its agent, made now so that a node we cannot reach fails init.
  const links = new Map<number, Promise<AgentLink>>();
  const peers: Peer[] = [];
  for (const [r, c] of cards.entries()) {
    const sel = selectTransport(self, { rank: r, node: c.node, agent: c.agent }, BUILTIN_TRANSPORTS);
    if (!sel.ok) throw new MprunError('ERR_MPRUN_UNREACHABLE', `rank ${r} is unreachable: ${sel.reasons.join('; ')}`, { rank: r });
    const base = { rank: r, pid: c.pid, node: c.node, nodeIndex: c.nodeIndex };
    if (r === env.rank) {
      peers.push({ ...base, localRank: c.localRank, transport: sel.transport, link: null, heap, coll, attachments: [] });
    } else if (sel.transport === 'dsm') {
      if (!links.has(c.nodeIndex)) links.set(c.nodeIndex, AgentLink.open(c.nodeIndex, c.node, c.agent!, env.secret, env.rank));
      peers.push({ ...base, localRank: -1, transport: 'dsm', link: null, heap: null, coll: null, attachments: [] });
    } else {
      // Attached on first use: a rank maps only the peers it touches (issue 13).
      const att = new xpmem.LazyAttachment(c.heapSegid, c.heapBytes);
      const collAtt = new xpmem.LazyAttachment(c.collSegid, c.collBytes);
      peers.push({ ...base, localRank: c.localRank, transport: `${sel.transport}/${xpmem.backendName()}`, link: null, get heap() { return att.buffer; }, get coll() { return collAtt.buffer; }, attachments: [att, collAtt] });
    }
  }
  const opened = new Map<number, AgentLink>();
  for (const [n, l] of links) opened.set(n, await l);
  for (const p of peers) if (p.transport === 'dsm') p.link = opened.get(p.nodeIndex)!;
  if (config.debug) {
    process.stderr.write(`mprun[${env.rank}]: pid ${process.pid} node ${node}; peers: ${peers.map((p) => `${p.rank}:${p.transport}`).join(' ')}\n`);
  }
  const waiter = new Waiter(ctrl, env.localRank, config.spinMicros, config.yieldWhileSpinning, config.blockSliceMs);
  if (client !== null) {
    const c = client;
    waiter.reportWaits(config.hangReportMs, (waits) => c.waits(waits));
  }
  const world = new World({ env, config, ctrl, ownsCtrl, heap, peers, client, waiter, links: [...opened.values()] });
  // A rank that returns from its program without finalize still finalizes,
  // so that its peers' last collective completes.
  process.once('beforeExit', () => {
    if (!world.finalized) void world.finalize();
  });
  return world;
}
