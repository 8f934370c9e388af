/**
 * The round protocol of the shared-memory collectives (shm.ts), as one member
 * of a team on one node runs it.
 *
 * Every member of a team has, in the node control segment, an `ack` and a
 * `data` word for the team (monotonic, never reset), and in its collective
 * arena a ring of scratch slots ("banks") that the other members have mapped.
 * A collective runs as rounds; round c (a counter every member advances alike):
 *   - a producer waits until every member has acked round c - slots (the last
 *     use of slot c mod slots), writes a header and its data there, and
 *     publishes data = 4c + stage;
 *   - readers wait for the producers' data words and copy (or reduce) straight
 *     out of the producers' banks: one copy in, one copy out, never through a
 *     third buffer, and readers of one producer copy in parallel;
 *   - every member then sets ack = c.
 * Several slots let a producer run ahead of slow readers (ranks outnumbering
 * cores), so a large broadcast is pipelined without waiting for slot reuse.
 * The header (kind, type, operator, root, lengths) lets readers detect
 * members that called a different collective or passed different lengths,
 * and fail with a clear error instead of hanging.
 *
 * A reduction's contribution of at most REDUCTION_INLINE_BYTES lies in the
 * header's own cache line, and every reduction's header carries a stamp
 * (4c + 1, written after the data, before the data word): the native fast path
 * (native/coll.cc) waits on a member's stamp and finds header and data in the
 * same line, one transfer between cores where the data word, the header and
 * the data took three. The steps still wait on the data word.
 */
import { MprunError } from '../../core/errors.js';
import type { TypedArray } from '../../core/types.js';
import { WAKE_ACK, WAKE_SYNC, type ControlSegment } from '../../transports/shm/control.js';
import { TypedViews } from '../../transports/shm/views.js';
import { native, type CollTeamBinding } from '../../native/index.js';
import { KIND, KIND_NAME, typeName, type Part, type Ready, type Steps } from './engine.js';
import { ALLREDUCE_FLAT_BYTES } from './shm-reduce.js';

// header words (Int32) at the start of a bank
const H_KIND = 0;
const H_DTYPE = 1;
const H_OP = 2;
const H_ROOT = 3;
const H_TOTAL = 4; // float64 at byte 16: the contribution's total bytes
/** Int32 word of a reduction's stamp: 4c + 1 once its contribution is in place (any header first sets 4c). */
const H_STAMP = 6;
/** Byte offset in a bank of a small reduction's contribution, in the header's first cache line. */
const H_INLINE = 32;
/** The largest reduction contribution kept in the header's line. */
export const REDUCTION_INLINE_BYTES = 32;
/** Byte offset in a bank of the part table: float64 part offsets (size + 1), then int32 part types (size). */
const H_PARTS = 64;

/** What the collectives use of the node control segment: its words, and the doorbells. */
export type CollectiveControl = Pick<ControlSegment, 'i32' | 'ring' | 'doorIndex' | 'sleepingIndex'>;

/** The memory and flags of one team on one node, as seen by one member. */
export interface ShmTeamLayout {
  ctrl: CollectiveControl;
  /** This member's team rank, and the team size. */
  me: number;
  size: number;
  /** World rank of each member (for error messages). */
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
  /** Ranks outnumber cores: a spinning member gives its core away (the native fast paths too). */
  spinYields?: boolean;
}

export interface BankHeader {
  kind: number;
  dtype: number;
  op: number;
  root: number;
  total: number;
}

/**
 * A small collective's plan as one number for native/coll.cc (its team's
 * reduce() and bcast()): kind < 16, dtype (core/codec.ts) < 16, op (ops.ts opCode) < 16.
 */
export function collPlan(bytes: number, kind: number, dtype: number, op: number): number {
  return ((bytes * 16 + kind) * 16 + dtype) * 16 + op;
}

/** A reduction's root and readers as one number for native/coll.cc's reduce() (both below 2^20: members of a node's team). */
export function collWho(root: number, nRead: number): number {
  return root * 1048576 + nRead;
}

/** What a header must say; unset fields are not checked. */
export interface Expected {
  dtype?: number;
  op?: number;
  root?: number;
  total?: number;
}

function modGE(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

export class ShmRounds {
  readonly layout: ShmTeamLayout;
  readonly #i32: Int32Array;
  readonly #headerBytes: number;
  /** Bytes of one slot (header and data), and how many slots the scratch holds. */
  readonly #slotBytes: number;
  readonly slots: number;
  /** Per member: bytes and int32/float64 views of its scratch, and typed views by element type. */
  readonly #u8: Array<Uint8Array | undefined>;
  readonly #h32: Array<Int32Array | undefined>;
  readonly #h64: Array<Float64Array | undefined>;
  readonly #views: Array<TypedViews | undefined>;
  #c = 0;
  #native: CollTeamBinding | null = null;
  /** The native team's call arguments (CollTeamBinding): [round, plan, who or root, spinNs, dozeNs, published (a resumed reduction's)]. */
  readonly collArgs = new Float64Array(6);
  #staging: TypedViews | null = null;
  /** Per member: whether the native team has its bank. */
  #nativeBanks = new Uint8Array(0);
  #banksFrom0 = 0;

  constructor(layout: ShmTeamLayout) {
    this.layout = layout;
    this.#i32 = layout.ctrl.i32;
    this.#headerBytes = Math.ceil((H_PARTS + 8 * (layout.size + 1) + 4 * layout.size) / 64) * 64;
    // A power of two: round c's slot is (c mod 2^32) mod slots, and only then does round c + 2^32
    // (the counter's wrap) keep the slot sequence. With 7 slots, 2^32 mod 7 = 4: after the wrap a
    // round reused the slot of the round 4 before it, which a reader up to 7 behind could still be
    // reading (hours into a job of tight collectives).
    const fit = Math.max(2, Math.floor(layout.scratchBytes / (this.#headerBytes + 2 * layout.chunkBytes)));
    this.slots = 2 ** Math.floor(Math.log2(fit));
    this.#slotBytes = Math.floor(layout.scratchBytes / this.slots / 64) * 64;
    if (this.#slotBytes < this.#headerBytes + 4096) throw new MprunError('ERR_MPRUN_ARG', `MPRUN_COLL_BANK of ${layout.scratchBytes / 2} bytes is too small for a team of ${layout.size}`);
    this.#u8 = new Array<Uint8Array | undefined>(layout.size).fill(undefined);
    this.#h32 = new Array<Int32Array | undefined>(layout.size).fill(undefined);
    this.#h64 = new Array<Float64Array | undefined>(layout.size).fill(undefined);
    this.#views = new Array<TypedViews | undefined>(layout.size).fill(undefined);
  }

  // --- member j's scratch, mapped on first use --------------------------------

  #map(j: number): void {
    const t = this.layout;
    const b = t.scratch(j);
    this.#u8[j] = new Uint8Array(b, t.scratchOffset, t.scratchBytes);
    this.#h32[j] = new Int32Array(b, t.scratchOffset, t.scratchBytes / 4);
    this.#h64[j] = new Float64Array(b, t.scratchOffset, t.scratchBytes / 8);
    this.#views[j] = new TypedViews(b, t.scratchOffset, t.scratchBytes);
  }
  /** Member j's scratch as bytes. */
  u8(j: number): Uint8Array {
    return this.#u8[j] ?? (this.#map(j), this.#u8[j]!);
  }
  #H32(j: number): Int32Array {
    return this.#h32[j] ?? (this.#map(j), this.#h32[j]!);
  }
  #H64(j: number): Float64Array {
    return this.#h64[j] ?? (this.#map(j), this.#h64[j]!);
  }
  /** Member j's scratch as `Ctor` elements. */
  view(j: number, Ctor: unknown): TypedArray {
    return (this.#views[j] ?? (this.#map(j), this.#views[j]!)).of(Ctor);
  }

  /**
   * This member's team in native/coll.cc (the barrier and small reductions and
   * broadcasts at native speed), made on first use, with the banks its next
   * collective touches given to it: members 0..readers-1 (whose contributions it
   * reads) and `also` (-1: none; our own where we write, the root's for a
   * broadcast), mapped the first time, as the steps map only what they read.
   */
  native(readers: number, also: number): CollTeamBinding {
    const t = this.layout;
    if (this.#native === null) {
      const { ctrl } = t;
      const ints = (f: (j: number) => number): Int32Array => Int32Array.from({ length: t.size }, (_, j) => f(j));
      this.#native = native().collTeam(ctrl.i32, t.me, Int32Array.from(t.ackIndex), Int32Array.from(t.dataIndex), ints((j) => ctrl.sleepingIndex(t.localRanks[j]!)), ints((j) => ctrl.doorIndex(t.localRanks[j]!)), this.slots, this.#slotBytes, this.#headerBytes, t.spinYields === true, this.staging().buffer, this.collArgs);
      this.#nativeBanks = new Uint8Array(t.size);
    }
    // Members 0..#banksFrom0-1 have theirs already: the common call checks one number.
    if (readers > this.#banksFrom0) {
      for (let j = this.#banksFrom0; j < readers; j++) if (this.#nativeBanks[j] === 0) this.#giveBank(j);
      this.#banksFrom0 = readers;
    }
    if (also >= 0 && this.#nativeBanks[also] === 0) this.#giveBank(also);
    return this.#native;
  }

  /**
   * Where the native fast paths pass a small array in and out (a one-round
   * broadcast's or reduction's, ALLREDUCE_FLAT_BYTES at most): a small array
   * made in JavaScript lives on V8's heap, and handing it to native code would
   * move it off (a backing store allocated), which costs more than the
   * collective. One per team, made on first use; the native team is given it
   * when made, so that its calls pass numbers only.
   */
  staging(): TypedViews {
    return (this.#staging ??= new TypedViews(new ArrayBuffer(ALLREDUCE_FLAT_BYTES)));
  }

  #giveBank(j: number): void {
    native().collBank(this.#native!.handle, j, this.u8(j));
    this.#nativeBanks[j] = 1;
  }

  // --- rounds --------------------------------------------------------------------

  /** Starts the next round; returns its number. */
  next(): number {
    this.#c = (this.#c + 1) | 0;
    return this.#c;
  }

  /** Byte offset of the slot round `c` uses, within a member's scratch. */
  bank(c: number): number {
    return ((c >>> 0) % this.slots) * this.#slotBytes;
  }

  /** Byte offset of round c's data (after its header), within a member's scratch. */
  dataAt(c: number): number {
    return this.bank(c) + this.#headerBytes;
  }

  /** Byte offset of a reduction's contribution of `bytes` in round c: in the header's line when it fits. */
  reductionAt(c: number, bytes: number): number {
    return bytes <= REDUCTION_INLINE_BYTES ? this.bank(c) + H_INLINE : this.dataAt(c);
  }

  /** Our reduction contribution for round c is in place (after it, publish()). */
  stamp(c: number): void {
    Atomics.store(this.#H32(this.layout.me), (this.bank(c) >> 2) + H_STAMP, (c * 4 + 1) | 0);
  }

  /** Data bytes a slot holds after its header. */
  get capacity(): number {
    return this.#slotBytes - this.#headerBytes;
  }

  /** Wakes the other members sleeping for events of class `wake` (one load each otherwise). */
  #ring(wake: number): void {
    const ctrl = this.layout.ctrl;
    const locals = this.layout.localRanks;
    for (let j = 0; j < locals.length; j++) if (j !== this.layout.me) ctrl.ring(locals[j]!, wake);
  }

  /** This member's data for round c, stage `stage`, is in its bank. */
  publish(c: number, stage: number): void {
    Atomics.store(this.#i32, this.layout.dataIndex[this.layout.me]!, (c * 4 + stage) | 0);
    this.#ring(WAKE_SYNC);
  }

  /** This member is done with round c (others may reuse the banks it read). */
  finish(c: number): void {
    Atomics.store(this.#i32, this.layout.ackIndex[this.layout.me]!, c);
    this.#ring(WAKE_ACK);
  }

  published(j: number, c: number, stage: number): boolean {
    return modGE(Atomics.load(this.#i32, this.layout.dataIndex[j]!), (c * 4 + stage) | 0);
  }

  whenPublished(j: number, c: number, stage: number): Ready {
    return () => this.published(j, c, stage);
  }

  *untilPublished(members: Iterable<number>, c: number, stage: number): Steps<void> {
    for (const j of members) {
      if (!this.published(j, c, stage)) yield this.whenPublished(j, c, stage);
    }
  }

  acked(j: number, c: number): boolean {
    return modGE(Atomics.load(this.#i32, this.layout.ackIndex[j]!), c | 0);
  }

  whenAcked(j: number, c: number): Ready {
    const ready: Ready = () => this.acked(j, c);
    ready.wake = WAKE_ACK;
    return ready;
  }

  /** Until every member has acked round c. */
  *untilAcked(c: number): Steps<void> {
    for (let j = 0; j < this.layout.size; j++) if (!this.acked(j, c)) yield this.whenAcked(j, c);
  }

  /** Our slot for round c is free once every member has acked the round that used it last. */
  untilBankFree(c: number): Steps<void> {
    return this.untilAcked(c - this.slots);
  }

  // --- headers ---------------------------------------------------------------------

  /** Writes this member's header for round c; returns the byte offset of its data. */
  writeHeader(c: number, kind: number, dtype: number, op: number, root: number, total: number): number {
    const b = this.bank(c);
    const h = this.#H32(this.layout.me);
    h[(b >> 2) + H_KIND] = kind;
    h[(b >> 2) + H_DTYPE] = dtype;
    h[(b >> 2) + H_OP] = op;
    h[(b >> 2) + H_ROOT] = root;
    h[(b >> 2) + H_STAMP] = (c * 4) | 0;
    this.#H64(this.layout.me)[(b + H_TOTAL * 4) >> 3] = total;
    return b + this.#headerBytes;
  }

  /** Writes this member's part table for round c: byte offsets of the parts (size + 1) and their types. */
  writeParts(c: number, offsets: Float64Array, parts: readonly Part[]): void {
    const b = this.bank(c);
    const me = this.layout.me;
    this.#H64(me).set(offsets, (b + H_PARTS) >> 3);
    const h = this.#H32(me);
    const w = (b + H_PARTS + 8 * (this.layout.size + 1)) >> 2;
    for (let q = 0; q < parts.length; q++) h[w + q] = parts[q]!.dtype;
  }

  /** Member j's part q in round c: its byte range in j's stream, and its type. */
  part(j: number, c: number, q: number): { lo: number; hi: number; dtype: number } {
    const b = this.bank(c);
    const o = (b + H_PARTS) >> 3;
    return { lo: this.#H64(j)[o + q]!, hi: this.#H64(j)[o + q + 1]!, dtype: this.#H32(j)[((b + H_PARTS + 8 * (this.layout.size + 1)) >> 2) + q]! };
  }

  header(j: number, c: number): BankHeader {
    const b = this.bank(c);
    const h = this.#H32(j);
    return { kind: h[(b >> 2) + H_KIND]!, dtype: h[(b >> 2) + H_DTYPE]!, op: h[(b >> 2) + H_OP]!, root: h[(b >> 2) + H_ROOT]!, total: this.#H64(j)[(b + H_TOTAL * 4) >> 3]! };
  }

  mismatch(j: number, what: string): MprunError {
    const t = this.layout;
    return new MprunError('ERR_MPRUN_COLLECTIVE_MISMATCH', `collective mismatch: team rank ${j} (world rank ${t.worldRanks[j]}) ${what} (seen by team rank ${t.me}, world rank ${t.worldRanks[t.me]})`, { rank: t.worldRanks[j]! });
  }

  /** Checks member j's header for round c against what this member called; returns it. */
  expect(j: number, c: number, kind: number, extra?: Expected): BankHeader {
    const h = this.header(j, c);
    // Round c's header, not one an earlier round left in the slot (read by a member that called another root).
    const stamp = Atomics.load(this.#H32(j), (this.bank(c) >> 2) + H_STAMP);
    if ((stamp & ~1) !== ((c * 4) | 0)) throw this.mismatch(j, `has not published this round's header (its slot holds an earlier round's): the members called collectives in another order, or with other roots`);
    if (h.kind !== kind) throw this.mismatch(j, `called ${KIND_NAME[h.kind] ?? `collective #${h.kind}`} where this rank called ${KIND_NAME[kind]}`);
    if (extra?.root !== undefined && h.root !== extra.root) throw this.mismatch(j, `gave root ${h.root}, this rank ${extra.root}`);
    if (extra?.dtype !== undefined && h.dtype !== extra.dtype) throw this.mismatch(j, `passed ${typeName(h.dtype)}, this rank ${typeName(extra.dtype)}`);
    if (extra?.op !== undefined && h.op !== extra.op) throw this.mismatch(j, `reduces with operator #${h.op}, this rank #${extra.op}`);
    if (extra?.total !== undefined && h.total !== extra.total) throw this.mismatch(j, `passed ${h.total} bytes, this rank ${extra.total}`);
    return h;
  }

  /** The same for a reduction, on the hot path: reads the header words in place, and builds the message only on a mismatch. */
  expectReduction(j: number, c: number, kind: number, dtype: number, op: number, total: number, root: number): void {
    const b = this.bank(c);
    const h = this.#H32(j);
    const w = b >> 2;
    if (h[w + H_KIND] !== kind || h[w + H_DTYPE] !== dtype || h[w + H_OP] !== op || this.#H64(j)[(b + H_TOTAL * 4) >> 3] !== total || (kind === KIND.reduce && h[w + H_ROOT] !== root) || (h[w + H_STAMP]! & ~1) !== ((c * 4) | 0)) {
      this.expect(j, c, kind, kind === KIND.reduce ? { dtype, op, total, root } : { dtype, op, total });
    }
  }
}
