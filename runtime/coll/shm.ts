/**
 * Collectives among the ranks of one node, through shared memory.
 *
 * Every member of a team has, in the node control segment, an `ack` and a
 * `data` word for the team (monotonic, never reset), and in its collective
 * arena a ring of scratch slots that the other members have mapped. A
 * collective runs as rounds; round c (a counter every member advances alike):
 *   - a producer waits until every member has acked round c - slots (the last
 *     use of slot c mod slots), writes a header and its data there, and
 *     publishes data = 4c + stage;
 *   - readers wait for the producers' data words and copy (or reduce) straight
 *     out of the producers' banks: one copy in, one copy out, never through a
 *     third buffer, and readers of one producer copy in parallel;
 *   - every member then sets ack = c.
 * Several slots let a producer run ahead of slow readers (ranks outnumbering
 * cores), so a large broadcast is pipelined without waiting for slot reuse. The header (kind, type, operator, root,
 * lengths) lets readers detect members that called a different collective or
 * passed different lengths, and fail with a clear error instead of hanging.
 *
 * Algorithms are generators that yield "ready?" predicates; a driver waits on
 * them (asynchronously for the Team API, synchronously for split()), and every
 * wait drives the rank's point-to-point progress too.
 */
import { allocate, DTYPE_MSGPACK, dtypeOf, encode, finish, moveCtor, unpackValue } from '../../core/codec.js';
import { MprunError } from '../../core/errors.js';
import type { TypedArray } from '../../core/types.js';
import { WAKE_ACK, WAKE_SYNC, type ControlSegment } from '../../transports/shm/control.js';
import { TypedViews } from '../../transports/shm/views.js';
import { checkOp, kernel, opCode, type Kernel, type ReduceOp } from './ops.js';

/** What a collective waits for, polled by the driver; `wake` is the event class that can make it true. */
export type Ready = (() => boolean) & { wake?: number };
export type Steps<T> = Generator<Ready, T, void>;

/** What a team's collectives run on: ShmCollectives within a node, MsgCollectives across nodes. */
export interface CollectiveEngine {
  barrier(): Steps<void>;
  bcast(data: unknown, root: number): Steps<unknown>;
  gather(value: unknown, root: number | null): Steps<unknown>;
  scatter(parts: Part[] | null, root: number): Steps<unknown>;
  alltoall(parts: Part[]): Steps<unknown>;
  reduce<R>(buf: TypedArray, op: ReduceOp, kind: typeof KIND.reduce | typeof KIND.allreduce | typeof KIND.scan, root: number, result: R, scalar: ((a: TypedArray) => R) | null): Steps<R>;
}

export const KIND = { barrier: 1, bcast: 2, gather: 3, allgather: 4, scatter: 5, alltoall: 6, reduce: 7, allreduce: 8, scan: 9 } as const;
const KIND_NAME = Object.fromEntries(Object.entries(KIND).map(([k, v]) => [v, k])) as Record<number, string>;

// header words (Int32) at the start of a bank
const H_KIND = 0;
const H_DTYPE = 1;
const H_OP = 2;
const H_ROOT = 3;
const H_TOTAL = 4; // float64 at byte 16: the contribution's total bytes
const H_PARTS = 64; // byte offset: float64 part offsets (n + 1), then int32 part types (n)

/** Below this many bytes read per member, an allreduce reads everything everywhere (one step). */
const ALLREDUCE_FLAT_BYTES = 16 * 1024;

/** The memory and flags of one team on one node, as seen by one member. */
export interface ShmTeamLayout {
  ctrl: ControlSegment;
  /** This member's team rank, and the team size. */
  me: number;
  size: number;
  /** World rank of each member (for messages). */
  worldRanks: readonly number[];
  /** Word index in ctrl.i32 of each member's ack and data word for this team. */
  ackIndex: readonly number[];
  dataIndex: readonly number[];
  /** Local rank of each member, to ring its doorbell. */
  localRanks: readonly number[];
  /**
   * Member j's collective arena (its scratch for this team is scratchBytes at
   * scratchOffset), mapped here; called the first time member j's scratch is
   * read, so a rank maps only the arenas of the members it reads from.
   */
  scratch: (j: number) => ArrayBuffer;
  scratchOffset: number;
  scratchBytes: number;
  /** Bytes a reduction moves per round and member; data movement rounds carry twice this. */
  chunkBytes: number;
}

interface BankHeader {
  kind: number;
  dtype: number;
  op: number;
  root: number;
  total: number;
}

export interface Part {
  dtype: number;
  bytes: Uint8Array;
}

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer as ArrayBuffer, a.byteOffset, a.byteLength);
}

export function isTyped(v: unknown): v is TypedArray {
  return ArrayBuffer.isView(v) && !(v instanceof DataView) && !Buffer.isBuffer(v);
}

/** A value as parts of bytes: typed arrays alias their memory; msgpack is copied (the packer reuses its buffer). */
export function encodePart(value: unknown): Part {
  const e = encode(value);
  return { dtype: e.dtype, bytes: e.dtype === DTYPE_MSGPACK ? (e.payload as Uint8Array).slice() : bytesOf(e.payload) };
}

export function decodePart(dtype: number, bytes: Uint8Array): unknown {
  if (dtype === DTYPE_MSGPACK) return unpackValue(bytes);
  const out = allocate(dtype, bytes.byteLength);
  bytesOf(out).set(bytes);
  return finish(dtype, out);
}

function modGE(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

export class ShmCollectives implements CollectiveEngine {
  readonly #t: ShmTeamLayout;
  readonly #i32: Int32Array;
  readonly #headerBytes: number;
  /** Bytes of one slot (header and data), and how many slots the scratch holds. */
  readonly #slotBytes: number;
  readonly #slots: number;
  /** Per member: bytes and int32/float64 views of its scratch, and typed views by element type. */
  readonly #u8: Array<Uint8Array | undefined>;
  readonly #h32: Array<Int32Array | undefined>;
  readonly #h64: Array<Float64Array | undefined>;
  readonly #views: Array<TypedViews | undefined>;
  #c = 0;

  constructor(layout: ShmTeamLayout) {
    this.#t = layout;
    this.#i32 = layout.ctrl.i32;
    this.#headerBytes = Math.ceil((H_PARTS + 8 * (layout.size + 1) + 4 * layout.size) / 64) * 64;
    this.#slots = Math.max(2, Math.floor(layout.scratchBytes / (this.#headerBytes + 2 * layout.chunkBytes)));
    this.#slotBytes = Math.floor(layout.scratchBytes / this.#slots / 64) * 64;
    if (this.#slotBytes < this.#headerBytes + 4096) throw new MprunError('ERR_MPRUN_ARG', `MPRUN_COLL_BANK of ${layout.scratchBytes / 2} bytes is too small for a team of ${layout.size}`);
    this.#u8 = new Array<Uint8Array | undefined>(layout.size).fill(undefined);
    this.#h32 = new Array<Int32Array | undefined>(layout.size).fill(undefined);
    this.#h64 = new Array<Float64Array | undefined>(layout.size).fill(undefined);
    this.#views = new Array<TypedViews | undefined>(layout.size).fill(undefined);
  }

  /** Maps member j's scratch (on first use) and makes its views. */
  #map(j: number): void {
    const t = this.#t;
    const b = t.scratch(j);
    this.#u8[j] = new Uint8Array(b, t.scratchOffset, t.scratchBytes);
    this.#h32[j] = new Int32Array(b, t.scratchOffset, t.scratchBytes / 4);
    this.#h64[j] = new Float64Array(b, t.scratchOffset, t.scratchBytes / 8);
    this.#views[j] = new TypedViews(b, t.scratchOffset, t.scratchBytes);
  }
  #U8(j: number): Uint8Array {
    return this.#u8[j] ?? (this.#map(j), this.#u8[j]!);
  }
  #H32(j: number): Int32Array {
    return this.#h32[j] ?? (this.#map(j), this.#h32[j]!);
  }
  #H64(j: number): Float64Array {
    return this.#h64[j] ?? (this.#map(j), this.#h64[j]!);
  }
  #V(j: number): TypedViews {
    return this.#views[j] ?? (this.#map(j), this.#views[j]!);
  }

  get size(): number {
    return this.#t.size;
  }
  get me(): number {
    return this.#t.me;
  }

  // --- round protocol ----------------------------------------------------------

  #next(): number {
    this.#c = (this.#c + 1) | 0;
    return this.#c;
  }

  /** Byte offset of the slot round `c` uses, within a member's scratch. */
  #bank(c: number): number {
    return ((c >>> 0) % this.#slots) * this.#slotBytes;
  }

  /** Data bytes a slot holds after its header. */
  get #capacity(): number {
    return this.#slotBytes - this.#headerBytes;
  }

  /** Wakes the other members sleeping for events of class `wake` (one load each otherwise). */
  #ring(wake: number): void {
    const ctrl = this.#t.ctrl;
    const locals = this.#t.localRanks;
    for (let j = 0; j < locals.length; j++) if (j !== this.#t.me) ctrl.ring(locals[j]!, wake);
  }

  #publish(c: number, stage: number): void {
    Atomics.store(this.#i32, this.#t.dataIndex[this.#t.me]!, (c * 4 + stage) | 0);
    this.#ring(WAKE_SYNC);
  }

  #finish(c: number): void {
    Atomics.store(this.#i32, this.#t.ackIndex[this.#t.me]!, c);
    this.#ring(WAKE_ACK);
  }

  #published(j: number, c: number, stage: number): boolean {
    return modGE(Atomics.load(this.#i32, this.#t.dataIndex[j]!), (c * 4 + stage) | 0);
  }

  *#untilPublished(members: Iterable<number>, c: number, stage: number): Steps<void> {
    for (const j of members) {
      if (!this.#published(j, c, stage)) yield () => this.#published(j, c, stage);
    }
  }

  #acked(j: number, c: number): boolean {
    return modGE(Atomics.load(this.#i32, this.#t.ackIndex[j]!), c | 0);
  }

  #whenAcked(j: number, c: number): Ready {
    const ready: Ready = () => this.#acked(j, c);
    ready.wake = WAKE_ACK;
    return ready;
  }

  /** Our slot for round c is free once every member has acked the round that used it last. */
  *#untilBankFree(c: number): Steps<void> {
    const last = c - this.#slots;
    for (let j = 0; j < this.#t.size; j++) if (!this.#acked(j, last)) yield this.#whenAcked(j, last);
  }

  #writeHeader(c: number, kind: number, dtype: number, op: number, root: number, total: number): number {
    const b = this.#bank(c);
    const h = this.#H32(this.#t.me);
    h[(b >> 2) + H_KIND] = kind;
    h[(b >> 2) + H_DTYPE] = dtype;
    h[(b >> 2) + H_OP] = op;
    h[(b >> 2) + H_ROOT] = root;
    this.#H64(this.#t.me)[(b + H_TOTAL * 4) >> 3] = total;
    return b + this.#headerBytes;
  }

  #header(j: number, c: number): BankHeader {
    const b = this.#bank(c);
    const h = this.#H32(j);
    return { kind: h[(b >> 2) + H_KIND]!, dtype: h[(b >> 2) + H_DTYPE]!, op: h[(b >> 2) + H_OP]!, root: h[(b >> 2) + H_ROOT]!, total: this.#H64(j)[(b + H_TOTAL * 4) >> 3]! };
  }

  #mismatch(j: number, what: string): MprunError {
    const t = this.#t;
    return new MprunError('ERR_MPRUN_COLLECTIVE_MISMATCH', `collective mismatch: team rank ${j} (world rank ${t.worldRanks[j]}) ${what} (seen by team rank ${t.me}, world rank ${t.worldRanks[t.me]})`, { rank: t.worldRanks[j]! });
  }

  /** Checks member j's header against what this member called. */
  #expect(j: number, c: number, kind: number, extra?: { dtype?: number; op?: number; root?: number; total?: number }): BankHeader {
    const h = this.#header(j, c);
    if (h.kind !== kind) throw this.#mismatch(j, `called ${KIND_NAME[h.kind] ?? `collective #${h.kind}`} where this rank called ${KIND_NAME[kind]}`);
    if (extra?.root !== undefined && h.root !== extra.root) throw this.#mismatch(j, `gave root ${h.root}, this rank ${extra.root}`);
    if (extra?.dtype !== undefined && h.dtype !== extra.dtype) throw this.#mismatch(j, `passed ${typeName(h.dtype)}, this rank ${typeName(extra.dtype)}`);
    if (extra?.op !== undefined && h.op !== extra.op) throw this.#mismatch(j, `reduces with operator #${h.op}, this rank #${extra.op}`);
    if (extra?.total !== undefined && h.total !== extra.total) throw this.#mismatch(j, `passed ${h.total} bytes, this rank ${extra.total}`);
    return h;
  }

  /** A view of member j's scratch as `Ctor` elements. */
  #view(j: number, Ctor: unknown): TypedArray {
    return this.#V(j).of(Ctor);
  }

  // --- collectives -------------------------------------------------------------

  /** Flat barrier: one store, then every member's ack; the right shape when ranks share cores. */
  *barrier(): Steps<void> {
    const c = this.#next();
    this.#finish(c);
    for (let j = 0; j < this.#t.size; j++) if (!this.#acked(j, c)) yield this.#whenAcked(j, c);
  }

  /** Broadcast: typed arrays in place (and returned); any other value returned on every member. */
  *bcast(data: unknown, root: number): Steps<unknown> {
    const { me } = this.#t;
    const cap = this.#capacity;
    let src: Part | null = null;
    if (me === root) src = encodePart(data);
    let rounds = 1;
    let dst: Uint8Array | null = null;
    let dtype = 0;
    let result: unknown = data;
    for (let r = 0; r < rounds; r++) {
      const c = this.#next();
      if (me === root) {
        yield* this.#untilBankFree(c);
        const total = src!.bytes.byteLength;
        const at = this.#writeHeader(c, KIND.bcast, src!.dtype, 0, root, total);
        this.#U8(me).set(src!.bytes.subarray(r * cap, Math.min(total, (r + 1) * cap)), at);
        this.#publish(c, 1);
        rounds = Math.max(1, Math.ceil(total / cap));
      } else {
        yield* this.#untilPublished([root], c, 1);
        if (r === 0) {
          const h = this.#expect(root, c, KIND.bcast, { root });
          dtype = h.dtype;
          rounds = Math.max(1, Math.ceil(h.total / cap));
          if (isTyped(data)) {
            if (dtype === DTYPE_MSGPACK || moveCtor(dtype) !== (data.constructor as unknown) || data.byteLength !== h.total) {
              throw this.#mismatch(root, `broadcasts ${h.total} bytes of ${typeName(dtype)} into this rank's ${data.constructor.name} of ${data.byteLength} bytes`);
            }
            dst = bytesOf(data);
          } else if (dtype === DTYPE_MSGPACK) {
            dst = new Uint8Array(h.total);
          } else {
            const out = allocate(dtype, h.total);
            dst = bytesOf(out);
            result = finish(dtype, out);
          }
        }
        const from = r * cap;
        const n = Math.min(cap, dst!.byteLength - from);
        const at = this.#bank(c) + this.#headerBytes;
        dst!.set(this.#U8(root).subarray(at, at + n), from);
      }
      this.#finish(c);
    }
    if (me !== root && dtype === DTYPE_MSGPACK) result = unpackValue(dst!);
    return result;
  }

  /**
   * Every member contributes `value`; `readers` (all, or the root only) get
   * every contribution: concatenated when all are typed arrays of one type,
   * else as an array of values. Others get null.
   */
  *gather(value: unknown, root: number | null): Steps<unknown> {
    const { me, size } = this.#t;
    const kind = root === null ? KIND.allgather : KIND.gather;
    const reader = root === null || root === me;
    const cap = this.#capacity;
    const mine = encodePart(value);
    let rounds = 1;
    let dsts: Uint8Array[] = [];
    let dtypes: number[] = [];
    let result: unknown = null;
    for (let r = 0; r < rounds; r++) {
      const c = this.#next();
      yield* this.#untilBankFree(c);
      const at = this.#writeHeader(c, kind, mine.dtype, 0, root ?? -1, mine.bytes.byteLength);
      this.#U8(me).set(mine.bytes.subarray(r * cap, Math.min(mine.bytes.byteLength, (r + 1) * cap)), at);
      this.#publish(c, 1);
      if (r === 0 || reader) yield* this.#untilPublished(range(size), c, 1);
      if (r === 0) {
        // Every member learns every length, so that all agree on the rounds.
        const totals: number[] = [];
        for (let j = 0; j < size; j++) {
          const h = this.#expect(j, c, kind, root === null ? {} : { root });
          totals.push(h.total);
          dtypes.push(h.dtype);
        }
        rounds = Math.max(1, ...totals.map((t) => Math.ceil(t / cap)));
        if (reader) {
          const sameTyped = dtypes.every((d) => d === dtypes[0] && d !== DTYPE_MSGPACK);
          if (sameTyped) {
            const all = allocate(dtypes[0]!, totals.reduce((a, b) => a + b, 0));
            const bytes = bytesOf(all);
            let off = 0;
            dsts = totals.map((t) => bytes.subarray(off, (off += t)));
            result = finish(dtypes[0]!, all);
          } else {
            dsts = totals.map((t) => new Uint8Array(t));
          }
        }
      }
      if (reader) {
        const at = this.#bank(c) + this.#headerBytes;
        for (let j = 0; j < size; j++) {
          const from = r * cap;
          const n = Math.min(cap, dsts[j]!.byteLength - from);
          if (n > 0) dsts[j]!.set(this.#U8(j).subarray(at, at + n), from);
        }
      }
      this.#finish(c);
    }
    if (reader && result === null) result = dsts.map((b, j) => decodePart(dtypes[j]!, b));
    return result;
  }

  /**
   * Parts exchange behind scatter (one producer, the root) and alltoall
   * (every member): producer p's part q goes to member q. Part tables travel
   * in the header; the parts stream through the banks.
   */
  *#parts(kind: number, producers: number[], mine: Part[] | null, root: number): Steps<{ dtypes: number[]; bytes: Uint8Array[] }> {
    const { me, size } = this.#t;
    const cap = this.#capacity;
    const offsets = new Float64Array(size + 1);
    let stream: Part[] = [];
    if (mine !== null) {
      stream = mine;
      for (let q = 0; q < size; q++) offsets[q + 1] = offsets[q]! + mine[q]!.bytes.byteLength;
    }
    const total = offsets[size]!;
    let rounds = 1;
    const dsts: Uint8Array[] = new Array(size);
    const ranges: Array<[number, number]> = new Array(size);
    const dtypes: number[] = new Array(size).fill(DTYPE_MSGPACK);
    for (let r = 0; r < rounds; r++) {
      const c = this.#next();
      if (mine !== null) {
        yield* this.#untilBankFree(c);
        const at = this.#writeHeader(c, kind, 0, 0, root, total);
        const b = this.#bank(c);
        this.#H64(me).set(offsets, (b + H_PARTS) >> 3);
        for (let q = 0; q < size; q++) this.#H32(me)[((b + H_PARTS + 8 * (size + 1)) >> 2) + q] = mine[q]!.dtype;
        copyStream(stream, offsets, r * cap, Math.min(total, (r + 1) * cap), this.#U8(me), at);
        this.#publish(c, 1);
      }
      yield* this.#untilPublished(producers, c, 1);
      const b = this.#bank(c);
      if (r === 0) {
        let maxTotal = 0;
        for (const p of producers) {
          const h = this.#expect(p, c, kind, kind === KIND.scatter ? { root } : {});
          maxTotal = Math.max(maxTotal, h.total);
          const lo = this.#H64(p)[((b + H_PARTS) >> 3) + me]!;
          const hi = this.#H64(p)[((b + H_PARTS) >> 3) + me + 1]!;
          ranges[p] = [lo, hi];
          dtypes[p] = this.#H32(p)[((b + H_PARTS + 8 * (size + 1)) >> 2) + me]!;
          dsts[p] = new Uint8Array(hi - lo);
        }
        rounds = Math.max(1, Math.ceil(maxTotal / cap));
      }
      const from = r * cap;
      const to = from + cap;
      for (const p of producers) {
        const [lo, hi] = ranges[p]!;
        const a = Math.max(lo, from);
        const z = Math.min(hi, to);
        if (z > a) dsts[p]!.set(this.#U8(p).subarray(b + this.#headerBytes + (a - from), b + this.#headerBytes + (z - from)), a - lo);
      }
      this.#finish(c);
    }
    return { dtypes, bytes: dsts };
  }

  /** The root's parts[i] goes to member i (parts: see partsOf); returns this member's. */
  *scatter(parts: Part[] | null, root: number): Steps<unknown> {
    const got = yield* this.#parts(KIND.scatter, [root], this.#t.me === root ? parts : null, root);
    return decodePart(got.dtypes[root]!, got.bytes[root]!);
  }

  /** parts[i] goes to member i; returns what every member sent this one (typed: concatenated). */
  *alltoall(parts: Part[]): Steps<unknown> {
    const got = yield* this.#parts(KIND.alltoall, range(this.#t.size), parts, -1);
    const d0 = got.dtypes[0]!;
    if (d0 !== DTYPE_MSGPACK && got.dtypes.every((d) => d === d0)) {
      const out = allocate(d0, got.bytes.reduce((a, b) => a + b.byteLength, 0));
      const o = bytesOf(out);
      let off = 0;
      for (const b of got.bytes) {
        o.set(b, off);
        off += b.byteLength;
      }
      return finish(d0, out);
    }
    return got.bytes.map((b, p) => decodePart(got.dtypes[p]!, b));
  }

  /**
   * Reductions in place on typed arrays: reduce (result at `root`), allreduce
   * (everywhere), scan (inclusive prefix). Every member folds contributions
   * in team-rank order, so all get bitwise the same result. A large allreduce
   * is a reduce-scatter (member i reduces segment i) then an allgather of the
   * segments, both through the banks.
   */
  /** Returns `result` when it is not a typed array (null for non-roots), else scalar(buf) or buf itself. */
  *reduce<R>(buf: TypedArray, op: ReduceOp, kind: typeof KIND.reduce | typeof KIND.allreduce | typeof KIND.scan, root: number, result: R, scalar: ((a: TypedArray) => R) | null): Steps<R> {
    const { me, size } = this.#t;
    const Ctor = buf.constructor;
    const { code, dtype, k } = this.#plan(Ctor, op);
    const bpe = buf.BYTES_PER_ELEMENT;
    // Contributions in the first half of a bank's data area, results in the second.
    const area = Math.floor(this.#capacity / 2 / 64) * 64;
    const perRound = Math.max(1, Math.floor(Math.min(area, this.#t.chunkBytes) / bpe));
    const rounds = Math.max(1, Math.ceil(buf.length / perRound));
    const nRead = kind === KIND.scan ? me + 1 : size;
    const iRead = kind !== KIND.reduce || me === root;
    const mine = this.#view(me, Ctor);
    for (let r = 0; r < rounds; r++) {
      const c = this.#next();
      const lo = r * perRound;
      const m = Math.min(buf.length, lo + perRound) - lo;
      for (let j = 0; j < size; j++) if (!this.#acked(j, c - this.#slots)) yield this.#whenAcked(j, c - this.#slots);
      const at = this.#writeHeader(c, kind, dtype, code, root, buf.byteLength);
      const contrib = at / bpe;
      const results = (at + area) / bpe;
      copyElements(mine, contrib, buf, lo, m);
      this.#publish(c, 1);
      if (iRead) {
        for (let j = 0; j < nRead; j++) {
          if (!this.#published(j, c, 1)) yield this.#whenPublished(j, c, 1);
          if (r === 0) this.#expectReduction(j, c, kind, dtype, code, buf.byteLength, root);
        }
      }
      const flat = kind !== KIND.allreduce || size === 1 || m * bpe <= ALLREDUCE_FLAT_BYTES;
      if (iRead && flat) {
        // Fold contributions 0..nRead-1 into our own buffer, in rank order.
        copyElements(buf, lo, this.#view(0, Ctor), contrib, m);
        for (let j = 1; j < nRead; j++) k(buf, lo, this.#view(j, Ctor), contrib, m);
      } else if (!flat) {
        // Reduce-scatter: this member reduces segment `me` into its result area ...
        const seg = Math.ceil(m / size);
        const s0 = Math.min(m, me * seg);
        const n0 = Math.min(m, s0 + seg) - s0;
        copyElements(mine, results + s0, this.#view(0, Ctor), contrib + s0, n0);
        for (let j = 1; j < size; j++) k(mine, results + s0, this.#view(j, Ctor), contrib + s0, n0);
        this.#publish(c, 2);
        // ... then gathers every member's segment.
        for (let j = 0; j < size; j++) {
          if (!this.#published(j, c, 2)) yield this.#whenPublished(j, c, 2);
          const a = Math.min(m, j * seg);
          copyElements(buf, lo + a, this.#view(j, Ctor), results + a, Math.min(m, a + seg) - a);
        }
      }
      this.#finish(c);
    }
    return result === null || scalar === null ? result : scalar(buf);
  }

  /** Per array type and operator: its code, type code and kernel, looked up once (checked then too). */
  readonly #plans = new Map<unknown, Map<string, { code: number; dtype: number; k: Kernel }>>();

  #plan(Ctor: unknown, op: ReduceOp): { code: number; dtype: number; k: Kernel } {
    let byOp = this.#plans.get(Ctor);
    if (byOp === undefined) this.#plans.set(Ctor, (byOp = new Map()));
    let plan = byOp.get(op);
    if (plan === undefined) {
      checkOp(op, Ctor);
      plan = { code: opCode(op), dtype: dtypeOf(new (Ctor as { new (n: number): TypedArray })(0)), k: kernel(Ctor, op) };
      byOp.set(op, plan);
    }
    return plan;
  }

  #whenPublished(j: number, c: number, stage: number): Ready {
    return () => this.#published(j, c, stage);
  }

  /** The hot-path check: reads the header words in place, and builds the message only on a mismatch. */
  #expectReduction(j: number, c: number, kind: number, dtype: number, op: number, total: number, root: number): void {
    const b = this.#bank(c);
    const h = this.#H32(j);
    const w = b >> 2;
    if (h[w + H_KIND] !== kind || h[w + H_DTYPE] !== dtype || h[w + H_OP] !== op || this.#H64(j)[(b + H_TOTAL * 4) >> 3] !== total || (kind === KIND.reduce && h[w + H_ROOT] !== root)) {
      this.#expect(j, c, kind, kind === KIND.reduce ? { dtype, op, total, root } : { dtype, op, total });
    }
  }
}

/** dst[dOff ..] = src[sOff ..], n elements of one type; a loop for a few, memcpy for more. */
function copyElements(dst: TypedArray, dOff: number, src: TypedArray, sOff: number, n: number): void {
  if (n <= 16) {
    for (let i = 0; i < n; i++) (dst as Float64Array)[dOff + i] = (src as Float64Array)[sOff + i]!;
  } else {
    (dst as Float64Array).set((src as Float64Array).subarray(sOff, sOff + n), dOff);
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export function typeName(dtype: number): string {
  return dtype === DTYPE_MSGPACK ? 'a msgpack value' : moveCtor(dtype).name;
}

/** values as `size` parts: equal slices of a typed array, or the elements of an array. */
export function partsOf(values: unknown, size: number, what: string): Part[] {
  if (isTyped(values)) {
    if (values.length % size !== 0) throw new RangeError(`${what}: a ${values.constructor.name} of ${values.length} elements does not split into ${size} equal parts`);
    const n = values.length / size;
    const dtype = encode(values).dtype;
    return range(size).map((q) => ({ dtype, bytes: bytesOf(values.subarray(q * n, (q + 1) * n)) }));
  }
  if (!Array.isArray(values) || values.length !== size) throw new TypeError(`${what}: expected an array of ${size} values (one per team rank) or a typed array`);
  return values.map(encodePart);
}

/** Copies bytes [from, to) of the concatenation of `parts` to dst at `at`. */
function copyStream(parts: Part[], offsets: Float64Array, from: number, to: number, dst: Uint8Array, at: number): void {
  for (let q = 0; q < parts.length; q++) {
    const lo = offsets[q]!;
    const hi = offsets[q + 1]!;
    const a = Math.max(lo, from);
    const z = Math.min(hi, to);
    if (z > a) dst.set(parts[q]!.bytes.subarray(a - lo, z - lo), at + (a - from));
  }
}
