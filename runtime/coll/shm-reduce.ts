/**
 * Reductions of the shared-memory collectives, in place on typed arrays:
 * reduce (result at `root`), allreduce (everywhere), scan (inclusive prefix),
 * over the rounds of shm-rounds.ts.
 *
 * Every member folds contributions in team-rank order, so all get bitwise the
 * same result. A large allreduce is a reduce-scatter (member i reduces
 * segment i) then an allgather of the segments, both through the banks.
 */
import { dtypeOf } from '../../core/codec.js';
import { baseTypedArrayCtor, type TypedArray } from '../../core/types.js';
import { KIND, type ReductionKind, type Steps } from './engine.js';
import { checkOp, kernel, opCode, type Kernel, type ReduceOp } from './ops.js';
import { collPlan, collWho, type ShmRounds } from './shm-rounds.js';

/** Below this many bytes read per member, an allreduce reads everything everywhere (one step). */
export const ALLREDUCE_FLAT_BYTES = 16 * 1024;

interface Plan {
  code: number;
  dtype: number;
  k: Kernel;
}

/** dst[dOff ..] = src[sOff ..], n elements of one type; a loop for a few, memcpy for more. */
function copyElements(dst: TypedArray, dOff: number, src: TypedArray, sOff: number, n: number): void {
  if (n <= 16) {
    for (let i = 0; i < n; i++) (dst as Float64Array)[dOff + i] = (src as Float64Array)[sOff + i]!;
  } else {
    (dst as Float64Array).set((src as Float64Array).subarray(sOff, sOff + n), dOff);
  }
}

/** The native reduce()'s results (native/coll.cc). */
const NOT_STARTED = 0;
const PUBLISHED = 1;
const DONE = 2;
const MISMATCH = 3;

export class ShmReductions {
  readonly #b: ShmRounds;
  /** A round tryReduce() began (its number, and how far it got) for resume() or reduce() to finish; what resume() copies. */
  #begun: { c: number; stage: number; buf: TypedArray; from: TypedArray; nRead: number } | null = null;
  #fastBytes: number | null = null;
  /** tryReduce's last type and operator, their codes and staging view. */
  #lastCtor: unknown = null;
  #lastOp = '';
  /** collPlan's low byte (dtype and op) for the last type and operator. */
  #lastPlanLow = 0;
  #lastStage: TypedArray | null = null;
  /** Per array type and operator: its code, type code and kernel, looked up once (checked then too). */
  readonly #plans = new Map<unknown, Map<string, Plan>>();

  constructor(rounds: ShmRounds) {
    this.#b = rounds;
  }

  #plan(Ctor: unknown, op: ReduceOp): Plan {
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

  /** Bytes of a bank's data area for contributions (the first half; results in the second), whole cache lines. */
  #area(): number {
    return Math.floor(this.#b.capacity / 2 / 64) * 64;
  }

  /** Elements of `bpe` bytes one round carries. */
  #perRound(bpe: number): number {
    return Math.max(1, Math.floor(Math.min(this.#area(), this.#b.layout.chunkBytes) / bpe));
  }

  /** See ShmCollectives.tryReduce. */
  tryReduce(buf: TypedArray, op: ReduceOp, kind: ReductionKind, root: number, ns: number, Ctor: unknown = buf.constructor, dozeNs = 0): boolean {
    // One flat round: at most what a round carries of 8-byte elements (smaller ones fit as many bytes).
    this.#fastBytes ??= Math.min(ALLREDUCE_FLAT_BYTES, this.#perRound(8) * 8);
    // The size from the constructor's element size (a plain property), not byteLength (a getter V8 does not inline).
    const bytes = buf.length * (Ctor as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
    if (bytes > this.#fastBytes) return false;
    const b = this.#b;
    // The last call's type and operator again (a loop's case): no lookups.
    if (Ctor !== this.#lastCtor || op !== this.#lastOp) {
      const plan = this.#plan(Ctor, op);
      // Through the team's staging array (ShmRounds.staging says why). Copies of a few elements are a loop; more, a memcpy.
      this.#lastStage = b.staging().of(Ctor);
      this.#lastPlanLow = collPlan(0, 0, plan.dtype, plan.code);
      this.#lastCtor = Ctor;
      this.#lastOp = op;
    }
    const stage = this.#lastStage!;
    const n = buf.length;
    copyElements(stage, 0, buf, 0, n);
    const me = b.layout.me;
    const nRead = kind === KIND.scan ? me + 1 : kind !== KIND.reduce || me === root ? b.layout.size : 0;
    // Everything that can throw before the round is taken: a failure leaves the rounds in step.
    const team = b.native(nRead, me);
    const c = b.next();
    const a = b.collArgs;
    a[0] = c;
    a[1] = collPlan(bytes, kind, 0, 0) + this.#lastPlanLow;
    a[2] = collWho(root, nRead);
    a[3] = ns;
    a[4] = dozeNs;
    a[5] = 0;
    const r = team.reduce();
    if (r === DONE) {
      if (nRead > 0) copyElements(buf, 0, stage, 0, n);
      return true;
    }
    this.#begun = { c, stage: r, buf, from: stage, nRead };
    return false;
  }

  /** Whether tryReduce() left a round resume() can take up. */
  get resumable(): boolean {
    return this.#begun !== null && this.#begun.stage !== MISMATCH;
  }

  /** See ShmCollectives.resume: the round tryReduce() left, in native code again (collArgs hold its plan, and the poll and sleep resume() set). */
  resume(): boolean {
    if (!this.resumable) return false;
    const begun = this.#begun!;
    const a = this.#b.collArgs;
    a[0] = begun.c;
    // Our contribution is in our bank already: not written, nobody rung, again.
    a[5] = begun.stage === PUBLISHED ? 1 : 0;
    const r = this.#b.native(begun.nRead, this.#b.layout.me).reduce();
    if (r !== DONE) {
      begun.stage = r;
      return false;
    }
    if (begun.nRead > 0) copyElements(begun.buf, 0, begun.from, 0, begun.buf.length);
    this.#begun = null;
    return true;
  }

  /** Returns `result` when it is not a typed array (null for non-roots), else scalar(buf) or buf itself. */
  *reduce<R>(buf: TypedArray, op: ReduceOp, kind: ReductionKind, root: number, result: R, scalar: ((a: TypedArray) => R) | null): Steps<R> {
    const b = this.#b;
    const { me, size } = b.layout;
    const slots = b.slots;
    // As its base type (a Buffer as Uint8Array), as the native fast path wrote the header of this round.
    const Ctor = baseTypedArrayCtor(buf.constructor);
    const { code, dtype, k } = this.#plan(Ctor, op);
    const bpe = buf.BYTES_PER_ELEMENT;
    const area = this.#area();
    const perRound = this.#perRound(bpe);
    // A round tryReduce() began: its number, and whether our contribution is published.
    const begun = this.#begun;
    this.#begun = null;
    const rounds = Math.max(1, Math.ceil(buf.length / perRound));
    const nRead = kind === KIND.scan ? me + 1 : size;
    const iRead = kind !== KIND.reduce || me === root;
    const mine = b.view(me, Ctor);
    for (let r = 0; r < rounds; r++) {
      const c = r === 0 && begun !== null ? begun.c : b.next();
      const lo = r * perRound;
      const m = Math.min(buf.length, lo + perRound) - lo;
      // Where native/coll.cc puts it too: decided by the whole contribution's bytes (a small one is one round).
      const at = b.reductionAt(c, buf.byteLength);
      const contrib = at / bpe;
      const results = (at + area) / bpe;
      if (r > 0 || begun === null || begun.stage === NOT_STARTED) {
        // Our bank is free (inline: no generator on the hot path).
        for (let j = 0; j < size; j++) if (!b.acked(j, c - slots)) yield b.whenAcked(j, c - slots);
        b.writeHeader(c, kind, dtype, code, root, buf.byteLength);
        copyElements(mine, contrib, buf, lo, m);
        b.stamp(c);
        b.publish(c, 1);
      }
      if (iRead) {
        for (let j = 0; j < nRead; j++) {
          if (!b.published(j, c, 1)) yield b.whenPublished(j, c, 1);
          if (r === 0) b.expectReduction(j, c, kind, dtype, code, buf.byteLength, root);
        }
      }
      const flat = kind !== KIND.allreduce || size === 1 || m * bpe <= ALLREDUCE_FLAT_BYTES;
      if (iRead && flat) {
        // Fold contributions 0..nRead-1 into our own buffer, in rank order.
        copyElements(buf, lo, b.view(0, Ctor), contrib, m);
        for (let j = 1; j < nRead; j++) k(buf, lo, b.view(j, Ctor), contrib, m);
      } else if (!flat) {
        // Reduce-scatter: this member reduces segment `me` into its result area ...
        const seg = Math.ceil(m / size);
        const s0 = Math.min(m, me * seg);
        const n0 = Math.min(m, s0 + seg) - s0;
        copyElements(mine, results + s0, b.view(0, Ctor), contrib + s0, n0);
        for (let j = 1; j < size; j++) k(mine, results + s0, b.view(j, Ctor), contrib + s0, n0);
        b.publish(c, 2);
        // ... then gathers every member's segment.
        for (let j = 0; j < size; j++) {
          if (!b.published(j, c, 2)) yield b.whenPublished(j, c, 2);
          const a = Math.min(m, j * seg);
          copyElements(buf, lo + a, b.view(j, Ctor), results + a, Math.min(m, a + seg) - a);
        }
      }
      b.finish(c);
    }
    return result === null || scalar === null ? result : scalar(buf);
  }
}
