/**
 * Shared variables: one logical array for every rank on every node, with
 * release consistency (TreadMarks, ArgoDSM; libdsm's shared map and holes).
 *
 * - Each node has one copy that its ranks (and its agent) map: plain loads and
 *   stores on `v.data` are local and cost nothing extra.
 * - Each page has a home node (page mod nnodes) whose copy is the reference.
 *   release() compares the node's copy with its twin (the copy as of the last
 *   synchronisation) and sends the changed elements, as diffs, to each page's
 *   home; so ranks writing different elements of one page all keep their
 *   writes. acquire() fetches from each home the pages whose version moved and
 *   merges them: an element changed at the home replaces the local one unless
 *   this node changed it too (its unreleased write wins, as it will be released).
 *   The diffs and merges: page-diff.ts; the homes' side: page-homes.ts.
 * - fetchAdd/compareSwap/load/store run at the element's home, atomically
 *   (hardware atomics on its memory, which its agent and ranks share).
 * - A hole (libdsm's dsm_dig_hole/dsm_fill_hole): a private copy of a range,
 *   written freely and published in one bulk message per home by fill().
 * - Semaphores live at the agent of the node their name hashes to; wait() is
 *   an acquire, post() a release.
 *
 * Release and acquire of one variable run one at a time per node (a lock word
 * in the variable's segment), so diffs from one node reach a home in order.
 */
import { MprunError } from '../../core/errors.js';
import { eventLoopTurn } from '../../core/turns.js';
import { dtypeOf } from '../../core/codec.js';
import { isTypedArrayCtor, type TypedArray, type TypedArrayConstructor } from '../../core/types.js';
import { allocShared } from '../shm/arena.js';
import * as xpmem from '../xpmem/index.js';
import { applyAtomic, isBigDtype } from '../atomics.js';
import { AgentLink } from './client.js';
import { AMO, MAX_PAYLOAD, DsmFrame, SemOp } from './frames.js';
import { homeOf, PAGE_BYTES, VAR_MAGIC, VarMemory, varLayout, W_LOCK, W_MAGIC, W_PAGES } from './layout.js';
import { mergePage, releaseRuns } from './page-diff.js';
import { encodeRegister, fetchRequests, packRuns, parsePages, type WriteRun } from './page-wire.js';

type Scalar<T> = T extends BigInt64Array | BigUint64Array ? bigint : number;

/** What shared memory needs of its world. */
export interface SharedContext {
  rank: number;
  nodeIndex: number;
  nnodes: number;
  secret: string;
  /** This node's agent's data address (null when mprun started no agent service). */
  agent: string | null;
  /** The connection to each other node's agent (opened on its first use: then a promise). */
  linkOf(node: number): AgentLink | Promise<AgentLink> | null;
  /** World collectives without shared-variable synchronisation. */
  allgather(value: unknown): Promise<unknown[]>;
  barrier(): Promise<void>;
  /** Broadcast among this node's ranks from its first. */
  nodeBcast(value: string): Promise<string>;
  nodeRank: number;
}

export class SharedMemory {
  readonly #context: SharedContext;
  readonly #vars = new Map<string, SharedVariable<TypedArray>>();
  readonly #sems = new Map<string, Semaphore>();
  #own: Promise<AgentLink> | null = null;
  #ownLink: AgentLink | null = null;

  constructor(c: SharedContext) {
    this.#context = c;
  }

  /** Whether any variable or semaphore exists (barriers then synchronise them). */
  get active(): boolean {
    return this.#vars.size > 0 || this.#sems.size > 0;
  }

  /** @internal the connection to node `n`'s agent when it is open (else null: link(n) opens it). */
  openLink(n: number): AgentLink | null {
    if (n === this.#context.nodeIndex) return this.#ownLink;
    const l = this.#context.linkOf(n);
    return l instanceof AgentLink ? l : null;
  }

  /** @internal the connection to node `n`'s agent (this node's: made on first use). */
  async link(n: number): Promise<AgentLink> {
    if (n !== this.#context.nodeIndex) {
      const l = this.#context.linkOf(n);
      if (l === null) throw new MprunError('ERR_MPRUN_UNREACHABLE', `no connection to node ${n}'s agent`);
      return l;
    }
    if (this.#context.agent === null) throw new MprunError('ERR_MPRUN_UNSUPPORTED', 'this process was not started by mprun, so there is no node agent to host semaphores');
    this.#own ??= AgentLink.open(n, 'this node', this.#context.agent, this.#context.secret, this.#context.rank).then((l) => (this.#ownLink = l));
    return this.#own;
  }

  /**
   * Collective: the shared variable `name` of `length` elements of `Type`,
   * zero-filled, the same memory on every rank. Calling it again with the same
   * name returns the same variable.
   */
  async share<T extends TypedArray>(name: string, Type: TypedArrayConstructor<T>, length: number): Promise<SharedVariable<T>> {
    if (typeof name !== 'string' || name === '') throw new TypeError('share: the name must be a non-empty string');
    if (!isTypedArrayCtor(Type) || (Type as unknown) === Uint8ClampedArray) throw new TypeError('share expects a numeric typed array constructor such as Float64Array');
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`share: length must be a non-negative integer, not ${length}`);
    const c = this.#context;
    const all = (await c.allgather([name, Type.name, length])) as Array<[string, string, number]>;
    all.forEach(([n, t, l], r) => {
      if (n !== name || t !== Type.name || l !== length) {
        throw new MprunError('ERR_MPRUN_COLLECTIVE_MISMATCH', `collective mismatch: rank ${r} shares '${n}' as ${l} × ${t}, rank ${c.rank} '${name}' as ${length} × ${Type.name}`, { rank: r });
      }
    });
    const known = this.#vars.get(name);
    if (known !== undefined) {
      if (known.data.constructor !== Type || known.data.length !== length) throw new MprunError('ERR_MPRUN_ARG', `share: '${name}' already exists as ${known.data.length} × ${known.data.constructor.name}`);
      return known as unknown as SharedVariable<T>;
    }
    const id = this.#vars.size;
    const bytes = length * Type.BYTES_PER_ELEMENT;
    const total = varLayout(bytes).total;
    let buffer: ArrayBuffer;
    let attachment: xpmem.Attachment | null = null;
    let segid: string;
    if (c.nodeRank === 0) {
      buffer = allocShared(total, 'mprun-dsm');
      const i32 = new Int32Array(buffer, 0, 16);
      i32[W_PAGES] = varLayout(bytes).pages;
      Atomics.store(i32, W_MAGIC, VAR_MAGIC);
      segid = xpmem.make(buffer, 0o600).toString();
      await c.nodeBcast(segid);
      if (c.nnodes > 1) await (await this.link(c.nodeIndex)).request(DsmFrame.VAR_REGISTER, { target: id }, encodeRegister(segid, Math.max(bytes, 1)));
    } else {
      segid = await c.nodeBcast('');
      attachment = xpmem.attachWhole(segid, total);
      const b = xpmem.mappedBuffer(attachment);
      if (b === null) throw new MprunError('ERR_MPRUN_UNSUPPORTED', 'shared variables need a mapping XPMEM backend (kernel or shm), not cma');
      buffer = b;
    }
    // Every node's agent knows the variable before anyone writes to it.
    await c.barrier();
    const v = new SharedVariable<T>(this, c, name, id, new VarMemory(buffer, Math.max(bytes, 1)), Type, length, attachment);
    this.#vars.set(name, v as unknown as SharedVariable<TypedArray>);
    return v;
  }

  /** Collective: the networked semaphore `name`, made with `initial` permits on its first creation. */
  async semaphore(name: string, initial = 0): Promise<Semaphore> {
    if (typeof name !== 'string' || name === '' || Buffer.byteLength(name) > 1024) throw new TypeError('semaphore: the name must be a non-empty string of at most 1 KiB');
    if (!Number.isInteger(initial) || initial < 0 || initial > 0x7fffffff) throw new RangeError(`semaphore: initial must be a non-negative integer, not ${initial}`);
    let s = this.#sems.get(name);
    if (s === undefined) {
      // node:crypto on first use: a rank that makes no semaphore never loads it.
      const { createHash } = await import('node:crypto');
      const home = createHash('sha256').update(name).digest().readUInt32LE(0) % this.#context.nnodes;
      s = new Semaphore(this, name, home);
      await (await this.link(home)).request(DsmFrame.SEM, { aux: SemOp.CREATE, arg: initial }, Buffer.from(name));
      this.#sems.set(name, s);
    }
    await this.#context.barrier();
    return s;
  }

  async releaseAll(): Promise<void> {
    for (const v of this.#vars.values()) await v.release();
  }

  async acquireAll(): Promise<void> {
    for (const v of this.#vars.values()) await v.acquire();
  }

  close(): void {
    this.#ownLink?.close();
    for (const v of this.#vars.values()) v.close();
  }
}

/** A networked semaphore (world.dsm.semaphore). */
export class Semaphore {
  constructor(
    readonly shared: SharedMemory,
    readonly name: string,
    readonly home: number,
  ) {}

  /** Takes a permit, waiting for one (P); then sees every shared write released before the matching post. */
  async wait(): Promise<void> {
    await (await this.shared.link(this.home)).request(DsmFrame.SEM, { aux: SemOp.WAIT }, Buffer.from(this.name));
    await this.shared.acquireAll();
  }

  /** Publishes this rank's shared writes, then gives a permit back (V). */
  async post(): Promise<void> {
    await this.shared.releaseAll();
    await (await this.shared.link(this.home)).request(DsmFrame.SEM, { aux: SemOp.POST }, Buffer.from(this.name));
  }
}

/** A range of a shared variable written privately, then published in one bulk message per home. */
export class Hole<T extends TypedArray> {
  #filled = false;
  constructor(
    readonly variable: SharedVariable<T>,
    readonly start: number,
    /** The private copy: write it freely; fill() publishes it. */
    readonly data: T,
  ) {}

  async fill(): Promise<void> {
    if (this.#filled) throw new MprunError('ERR_MPRUN_ARG', 'this hole is already filled');
    this.#filled = true;
    await this.variable.publishRange(this.start, this.data);
  }
}

export class SharedVariable<T extends TypedArray> {
  /** This node's copy: plain loads and stores; release() publishes, acquire() refreshes. */
  readonly data: T;
  readonly #shared: SharedMemory;
  readonly #context: SharedContext;
  readonly #id: number;
  readonly #memory: VarMemory;
  readonly #dtype: number;
  readonly #bpe: number;
  readonly #attachment: xpmem.Attachment | null;

  /** @internal use world.dsm.share */
  constructor(shared: SharedMemory, c: SharedContext, readonly name: string, id: number, memory: VarMemory, Type: TypedArrayConstructor<T>, length: number, attachment: xpmem.Attachment | null) {
    this.#shared = shared;
    this.#context = c;
    this.#id = id;
    this.#memory = memory;
    this.#attachment = attachment;
    this.data = new Type(memory.data.buffer as ArrayBuffer, memory.data.byteOffset, length);
    this.#dtype = dtypeOf(this.data);
    this.#bpe = Type.BYTES_PER_ELEMENT;
  }

  async #locked<R>(work: () => Promise<R>): Promise<R> {
    const i32 = this.#memory.i32;
    while (Atomics.compareExchange(i32, W_LOCK, 0, 1) !== 0) await eventLoopTurn();
    try {
      return await work();
    } finally {
      Atomics.store(i32, W_LOCK, 0);
    }
  }

  /** Publishes every write this node made to the variable since its last release. */
  release(): Promise<void> {
    return this.#locked(async () => {
      const { nnodes, nodeIndex } = this.#context;
      await this.#send(releaseRuns(this.#memory, nodeIndex, nnodes, this.#bpe));
    });
  }

  async #send(byHome: Map<number, WriteRun[]>): Promise<void> {
    const sent: Array<Promise<unknown>> = [];
    for (const [home, runs] of byHome) {
      const link = await this.#shared.link(home);
      for (const payload of packRuns(runs, MAX_PAYLOAD)) sent.push(link.request(DsmFrame.VAR_WRITE, { target: this.#id }, payload));
    }
    await Promise.all(sent);
  }

  /** Sees every write released (by any rank on any node) before this call. */
  acquire(): Promise<void> {
    const { nnodes, nodeIndex } = this.#context;
    if (nnodes === 1) return Promise.resolve();
    return this.#locked(async () => {
      const m = this.#memory;
      const asks: Array<Promise<void>> = [];
      for (let home = 0; home < nnodes; home++) {
        if (home === nodeIndex) continue;
        const pairs: Array<[number, number]> = [];
        for (let p = home; p < m.layout.pages; p += nnodes) pairs.push([p, Atomics.load(m.versions, p)]);
        // In requests whose replies fit a frame each (a variable over 16 MiB a node).
        for (const ask of fetchRequests(pairs)) {
          asks.push(
            (async () => {
              const got = await (await this.#shared.link(home)).request(DsmFrame.VAR_FETCH, { target: this.#id }, ask);
              for (const { page, version, bytes } of parsePages(got)) {
                const lo = page * PAGE_BYTES;
                mergePage(m.data.subarray(lo, lo + PAGE_BYTES), m.twin.subarray(lo, lo + PAGE_BYTES), bytes, this.#bpe);
                Atomics.store(m.versions, page, version);
              }
            })(),
          );
        }
      }
      await Promise.all(asks);
    });
  }

  #checkIndex(i: number, what: string): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.data.length) throw new RangeError(`${what}: index ${i} is outside the shared variable '${this.name}' of ${this.data.length}`);
  }

  #checkValue(v: unknown, what: string): void {
    const big = isBigDtype(this.#dtype);
    if (big ? typeof v !== 'bigint' : typeof v !== 'number') throw new TypeError(`${what}: '${this.name}' takes ${big ? 'bigint' : 'number'} values, not ${typeof v}`);
  }

  /** An atomic at the element's home (on this node: straight on the shared copy). */
  async #atomic(what: string, i: number, op: number, a: number | bigint, b: number | bigint): Promise<number | bigint> {
    this.#checkIndex(i, what);
    this.#checkValue(a, what);
    this.#checkValue(b, what);
    const at = i * this.#bpe;
    const page = Math.floor(at / PAGE_BYTES);
    const home = homeOf(page, this.#context.nnodes);
    if (home === this.#context.nodeIndex) {
      const old = applyAtomic(this.#memory.data.buffer as ArrayBuffer, this.#dtype, this.#memory.data.byteOffset + at, op, a, b);
      if (op !== AMO.FETCH) this.#memory.bump(page);
      return old;
    }
    const link = this.#shared.openLink(home) ?? (await this.#shared.link(home));
    return link.varAtomic(this.#id, at, op, this.#dtype, a, b, isBigDtype(this.#dtype), this.data instanceof BigUint64Array);
  }

  fetchAdd(i: number, x: Scalar<T>): Promise<Scalar<T>> {
    return this.#atomic('fetchAdd', i, AMO.FETCH_ADD, x, x) as Promise<Scalar<T>>;
  }

  compareSwap(i: number, expected: Scalar<T>, desired: Scalar<T>): Promise<Scalar<T>> {
    return this.#atomic('compareSwap', i, AMO.COMPARE_SWAP, expected, desired) as Promise<Scalar<T>>;
  }

  /** The element's coherent value (read at its home). */
  load(i: number): Promise<Scalar<T>> {
    const zero = isBigDtype(this.#dtype) ? 0n : 0;
    return this.#atomic('load', i, AMO.FETCH, zero, zero) as Promise<Scalar<T>>;
  }

  /** Stores the element at its home at once (coherent, not waiting for a release). */
  async store(i: number, x: Scalar<T>): Promise<void> {
    await this.#atomic('store', i, AMO.SET, x, x);
  }

  /**
   * Digs a hole over elements [start, start + length): a private copy of them
   * (`hole.data`) that this rank writes freely; `hole.fill()` puts it into the
   * variable and publishes it in one bulk message per home node.
   */
  hole(start: number, length: number): Hole<T> {
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > this.data.length) {
      throw new RangeError(`hole: [${start}, ${start + length}) is outside the shared variable '${this.name}' of ${this.data.length}`);
    }
    return new Hole(this, start, this.data.slice(start, start + length) as T);
  }

  /** @internal writes `values` at element `start` and publishes the range (Hole.fill). */
  publishRange(start: number, values: T): Promise<void> {
    return this.#locked(async () => {
      const m = this.#memory;
      const { nnodes, nodeIndex } = this.#context;
      (this.data as Float64Array).set(values as unknown as Float64Array, start);
      const lo = start * this.#bpe;
      const hi = lo + values.byteLength;
      const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      m.twin.set(bytes, lo);
      const byHome = new Map<number, WriteRun[]>();
      for (let p = Math.floor(lo / PAGE_BYTES); p * PAGE_BYTES < hi; p++) {
        const a = Math.max(lo, p * PAGE_BYTES);
        const z = Math.min(hi, (p + 1) * PAGE_BYTES);
        const home = homeOf(p, nnodes);
        if (home === nodeIndex) {
          m.bump(p);
          continue;
        }
        // Every page of the range homed there, in one VAR_WRITE (up to MAX_PAYLOAD).
        let runs = byHome.get(home);
        if (runs === undefined) byHome.set(home, (runs = []));
        runs.push([a, bytes.subarray(a - lo, z - lo)]);
      }
      await this.#send(byHome);
    });
  }

  /** @internal */
  close(): void {
    this.#attachment?.detach();
  }
}
