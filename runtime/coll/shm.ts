/**
 * Collectives among the ranks of one node, through shared memory: the
 * algorithms, as rounds over the members' banks (shm-rounds.ts: the round
 * protocol, the banks and their headers); reductions in shm-reduce.ts.
 *
 * Data moves one copy in, one copy out: a producer writes its data into its
 * own bank, readers copy straight out of it. Large values stream through
 * several rounds of at most a bank's capacity each; the first round's headers
 * tell every member the lengths, so that all agree on the number of rounds.
 */
import { allocate, DTYPE_MSGPACK, dtypeOf, finish, moveCtor, unpackValue } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import { bytesOf, decodePart, encodePart, isTyped, joins, KIND, range, typeName, type CollectiveEngine, type Part, type ReductionKind, type Steps } from './engine.js';
import type { ReduceOp } from './ops.js';
import { ShmReductions } from './shm-reduce.js';
import { collPlan, ShmRounds, type ShmTeamLayout } from './shm-rounds.js';
import type { CollTeamBinding } from '../../native/index.js';
import { ALLREDUCE_FLAT_BYTES } from './shm-reduce.js';

/** The native bcast()'s result when done (native/coll.cc). */
const DONE = 2;

export type { CollectiveControl, ShmTeamLayout } from './shm-rounds.js';
// Transitional: what runtime/coll/msg.ts imported from here before engine.ts; goes once its import names engine.js.
export { bytesOf, decodePart, isTyped, KIND, typeName, type CollectiveEngine, type Part, type Ready, type Steps } from './engine.js';

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

export class ShmCollectives implements CollectiveEngine {
  readonly #b: ShmRounds;
  readonly #reductions: ShmReductions;
  #team: CollTeamBinding | null = null;
  /** The round tryBarrier() arrived at without seeing every member there, for barrier() to finish. */
  #arrived: number | null = null;
  /** The round tryBcast() took and left undone, for resume() or bcast() to run; the array it fills and the staging view it fills it from. */
  #bcastBegun: { c: number; buf: TypedArray; from: TypedArray } | null = null;

  constructor(layout: ShmTeamLayout) {
    this.#b = new ShmRounds(layout);
    this.#reductions = new ShmReductions(this.#b);
  }

  get size(): number {
    return this.#b.layout.size;
  }
  get me(): number {
    return this.#b.layout.me;
  }

  /**
   * The barrier in native code (native/coll.cc), polling for `ns` (then
   * sleeping up to `dozeNs` on the doorbell: the synchronous forms'): whether it
   * is done. If not, this member has arrived, and barrier() waits for the rest.
   */
  tryBarrier(ns: number, dozeNs = 0): boolean {
    const team = this.#team ?? (this.#team = this.#b.native(0, -1));
    const c = this.#b.next();
    const a = this.#b.collArgs;
    a[0] = c;
    a[3] = ns;
    a[4] = dozeNs;
    if (team.barrier()) return true;
    this.#arrived = c;
    return false;
  }

  /**
   * A small reduction (one round) in native code, polling for `ns` at each
   * wait: whether it is done (the result in `buf`). If not, reduce() with the
   * same arguments carries on from where it stopped. False at once, doing
   * nothing, for a reduction that takes more than one round. `Ctor`: buf's
   * constructor, when the caller has it (a typed array's `constructor` is not
   * inlined by V8: core/codec.ts, typedCode). `dozeNs` as tryBarrier's.
   */
  tryReduce(buf: TypedArray, op: ReduceOp, kind: ReductionKind, root: number, ns: number, Ctor: unknown = buf.constructor, dozeNs = 0): boolean {
    return this.#reductions.tryReduce(buf, op, kind, root, ns, Ctor, dozeNs);
  }

  /**
   * A broadcast of a small typed array (one round) in native code, polling for
   * `ns` (and `dozeNs` as tryBarrier's): whether it is done (the root's data in `buf` everywhere). If not,
   * bcast() with the same arguments runs the round from its start.
   */
  tryBcast(buf: TypedArray, root: number, ns: number, dozeNs = 0): boolean {
    // Typed arrays as the steps move them (a subclass as its base type; not Buffers: isTyped() sends those as msgpack).
    const dtype = dtypeOf(buf);
    const b = this.#b;
    // One round: what one slot carries (the steps would take several beyond it).
    if (!isTyped(buf) || dtype === DTYPE_MSGPACK || buf.byteLength > Math.min(ALLREDUCE_FLAT_BYTES, b.capacity)) return false;
    // Through the team's staging array (ShmRounds.staging says why).
    const stage = b.staging().of(moveCtor(dtype));
    const me = b.layout.me;
    if (me === root) (stage as Float64Array).set(buf as Float64Array);
    // Everything that can throw before the round is taken: a failure leaves the rounds in step.
    const team = b.native(0, root);
    const c = b.next();
    const a = b.collArgs;
    a[0] = c;
    a[1] = collPlan(buf.byteLength, 0, dtype, 0);
    a[2] = root;
    a[3] = ns;
    a[4] = dozeNs;
    const r = team.bcast();
    if (r !== DONE) {
      this.#bcastBegun = { c, buf, from: stage };
      return false;
    }
    if (me !== root) (buf as Float64Array).set((stage as Float64Array).subarray(0, buf.length));
    return true;
  }

  /**
   * Resumes in native code the collective the last try*() began and left
   * undone, polling for `ns` and then sleeping up to `dozeNs` on the doorbell:
   * the same round, with the arguments it left in collArgs (the native calls
   * redo idempotently what they did of it). Whether it is done now, its
   * results where the try puts them; if not, barrier(), reduce() or bcast()
   * carries on from where it is. Team calls it in a promise form's
   * continuation, where the steps' wait would block the thread anyway.
   */
  resume(ns: number, dozeNs: number): boolean {
    const a = this.#b.collArgs;
    a[3] = ns;
    a[4] = dozeNs;
    if (this.#arrived !== null) {
      a[0] = this.#arrived;
      if (!this.#team!.barrier()) return false;
      this.#arrived = null;
      return true;
    }
    const begun = this.#bcastBegun;
    if (begun === null) return this.#reductions.resume();
    a[0] = begun.c;
    const root = a[2]!;
    if (this.#b.native(0, root).bcast() !== DONE) return false;
    if (this.#b.layout.me !== root) (begun.buf as Float64Array).set((begun.from as Float64Array).subarray(0, begun.buf.length));
    this.#bcastBegun = null;
    return true;
  }

  /** Whether the last try*() left a round that resume() can take up (false: it took none, or its round is a mismatch for the steps to report). */
  get resumable(): boolean {
    return this.#arrived !== null || this.#bcastBegun !== null || this.#reductions.resumable;
  }

  /** Flat barrier: one store, then every member's ack; the right shape when ranks share cores. */
  *barrier(): Steps<void> {
    const b = this.#b;
    let c = this.#arrived;
    if (c === null) {
      c = b.next();
      b.finish(c);
    } else {
      this.#arrived = null; // tryBarrier() arrived at round c already
    }
    // Inline, not yield*: the barrier is the hottest collective, and delegation costs a generator.
    for (let j = 0; j < b.layout.size; j++) if (!b.acked(j, c)) yield b.whenAcked(j, c);
  }

  /** Broadcast: typed arrays in place (and returned); any other value returned on every member. */
  *bcast(data: unknown, root: number): Steps<unknown> {
    const b = this.#b;
    const { me } = b.layout;
    const cap = b.capacity;
    let src: Part | null = null;
    if (me === root) src = encodePart(data);
    let rounds = 1;
    // A round tryBcast() began and left undone (nothing of it written): it runs here from its start.
    const begun = this.#bcastBegun?.c ?? null;
    this.#bcastBegun = null;
    let dst: Uint8Array | null = null;
    let dtype = 0;
    let result: unknown = data;
    for (let r = 0; r < rounds; r++) {
      const c = r === 0 && begun !== null ? begun : b.next();
      if (me === root) {
        yield* b.untilBankFree(c);
        const total = src!.bytes.byteLength;
        const at = b.writeHeader(c, KIND.bcast, src!.dtype, 0, root, total);
        b.u8(me).set(src!.bytes.subarray(r * cap, Math.min(total, (r + 1) * cap)), at);
        b.publish(c, 1);
        rounds = Math.max(1, Math.ceil(total / cap));
      } else {
        yield* b.untilPublished([root], c, 1);
        if (r === 0) {
          const h = b.expect(root, c, KIND.bcast, { root });
          dtype = h.dtype;
          rounds = Math.max(1, Math.ceil(h.total / cap));
          if (isTyped(data)) {
            if (dtype === DTYPE_MSGPACK || dtypeOf(data) !== dtype || data.byteLength !== h.total) {
              throw b.mismatch(root, `broadcasts ${h.total} bytes of ${typeName(dtype)} into this rank's ${data.constructor.name} of ${data.byteLength} bytes`);
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
        const at = b.dataAt(c);
        dst!.set(b.u8(root).subarray(at, at + n), from);
      }
      b.finish(c);
    }
    if (me !== root && dtype === DTYPE_MSGPACK) result = unpackValue(dst!);
    return result;
  }

  /**
   * Every member contributes `value`. With `root` null (allgather) every
   * member gets every contribution, else the root only, and the others get
   * null: concatenated when all are typed arrays of one type, else as an
   * array of values.
   */
  *gather(value: unknown, root: number | null): Steps<unknown> {
    const b = this.#b;
    const { me, size } = b.layout;
    const kind = root === null ? KIND.allgather : KIND.gather;
    const reader = root === null || root === me;
    const cap = b.capacity;
    const mine = encodePart(value);
    let rounds = 1;
    let dsts: Uint8Array[] = [];
    let dtypes: number[] = [];
    let result: unknown = null;
    for (let r = 0; r < rounds; r++) {
      const c = b.next();
      yield* b.untilBankFree(c);
      const at = b.writeHeader(c, kind, mine.dtype, 0, root ?? -1, mine.bytes.byteLength);
      b.u8(me).set(mine.bytes.subarray(r * cap, Math.min(mine.bytes.byteLength, (r + 1) * cap)), at);
      b.publish(c, 1);
      if (r === 0 || reader) yield* b.untilPublished(range(size), c, 1);
      if (r === 0) {
        // Every member learns every length, so that all agree on the rounds.
        const totals: number[] = [];
        for (let j = 0; j < size; j++) {
          const h = b.expect(j, c, kind, root === null ? {} : { root });
          totals.push(h.total);
          dtypes.push(h.dtype);
        }
        rounds = Math.max(1, ...totals.map((t) => Math.ceil(t / cap)));
        if (reader) {
          // The rule of teams across nodes (msg-lists.ts assemble): Buffers came back joined here only.
          const sameTyped = joins(dtypes[0]!) && dtypes.every((d) => d === dtypes[0]);
          if (sameTyped) {
            const all = allocate(dtypes[0]!, totals.reduce((x, y) => x + y, 0));
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
        const at = b.dataAt(c);
        for (let j = 0; j < size; j++) {
          const from = r * cap;
          const n = Math.min(cap, dsts[j]!.byteLength - from);
          if (n > 0) dsts[j]!.set(b.u8(j).subarray(at, at + n), from);
        }
      }
      b.finish(c);
    }
    if (reader && result === null) result = dsts.map((bytes, j) => decodePart(dtypes[j]!, bytes));
    return result;
  }

  /**
   * Parts exchange behind scatter (one producer, the root) and alltoall
   * (every member): producer p's part q goes to member q. Part tables travel
   * in the header; the parts stream through the banks.
   */
  *#parts(kind: number, producers: number[], mine: Part[] | null, root: number): Steps<{ dtypes: number[]; bytes: Uint8Array[] }> {
    const b = this.#b;
    const { me, size } = b.layout;
    const cap = b.capacity;
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
      const c = b.next();
      if (mine !== null) {
        yield* b.untilBankFree(c);
        const at = b.writeHeader(c, kind, 0, 0, root, total);
        b.writeParts(c, offsets, mine);
        copyStream(stream, offsets, r * cap, Math.min(total, (r + 1) * cap), b.u8(me), at);
        b.publish(c, 1);
      }
      yield* b.untilPublished(producers, c, 1);
      if (r === 0) {
        let maxTotal = 0;
        for (const p of producers) {
          const h = b.expect(p, c, kind, kind === KIND.scatter ? { root } : {});
          maxTotal = Math.max(maxTotal, h.total);
          const { lo, hi, dtype } = b.part(p, c, me);
          ranges[p] = [lo, hi];
          dtypes[p] = dtype;
          dsts[p] = new Uint8Array(hi - lo);
        }
        rounds = Math.max(1, Math.ceil(maxTotal / cap));
      }
      const from = r * cap;
      const to = from + cap;
      const at = b.dataAt(c);
      for (const p of producers) {
        const [lo, hi] = ranges[p]!;
        const a = Math.max(lo, from);
        const z = Math.min(hi, to);
        if (z > a) dsts[p]!.set(b.u8(p).subarray(at + (a - from), at + (z - from)), a - lo);
      }
      b.finish(c);
    }
    return { dtypes, bytes: dsts };
  }

  /** The root's parts[i] goes to member i (parts: see partsOf); returns this member's. */
  *scatter(parts: Part[] | null, root: number): Steps<unknown> {
    const got = yield* this.#parts(KIND.scatter, [root], this.#b.layout.me === root ? parts : null, root);
    return decodePart(got.dtypes[root]!, got.bytes[root]!);
  }

  /** parts[i] goes to member i; returns what every member sent this one (typed: concatenated). */
  *alltoall(parts: Part[]): Steps<unknown> {
    const got = yield* this.#parts(KIND.alltoall, range(this.#b.layout.size), parts, -1);
    const d0 = got.dtypes[0]!;
    if (joins(d0) && got.dtypes.every((d) => d === d0)) {
      const out = allocate(d0, got.bytes.reduce((x, y) => x + y.byteLength, 0));
      const o = bytesOf(out);
      let off = 0;
      for (const bytes of got.bytes) {
        o.set(bytes, off);
        off += bytes.byteLength;
      }
      return finish(d0, out);
    }
    return got.bytes.map((bytes, p) => decodePart(got.dtypes[p]!, bytes));
  }

  /** Reductions in place (shm-reduce.ts); returns `result` when it is not a typed array (null for non-roots), else scalar(buf) or buf. */
  reduce<R>(buf: TypedArray, op: ReduceOp, kind: ReductionKind, root: number, result: R, scalar: ((a: TypedArray) => R) | null): Steps<R> {
    return this.#reductions.reduce(buf, op, kind, root, result, scalar);
  }
}
