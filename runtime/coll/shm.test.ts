/**
 * The shared-memory collectives in one process: N simulated members, each a
 * ShmCollectives over plain memory (the ack and data words in an Int32Array,
 * each member's arena an ArrayBuffer), their generators stepped in a seeded
 * random order in one thread. Every interleaving the schedule produces is one
 * that real ranks could, since the members share nothing but that memory.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { isMprunError } from '../../core/errors.js';
import type { TypedArray } from '../../core/types.js';
import { WAKE_ACK, WAKE_BITS, WAKE_SYNC } from '../../transports/shm/control.js';
import { KIND, partsOf, type ReductionKind, type Ready, type Steps } from './engine.js';
import { REDUCE_OPS, type ReduceOp } from './ops.js';
import { ALLREDUCE_FLAT_BYTES } from './shm-reduce.js';
import { ShmCollectives, type CollectiveControl } from './shm.js';
import { ShmRounds } from './shm-rounds.js';

/** Small banks, so that modest values take several rounds and reuse slots: 2 slots of 64 KiB. */
const BANK = 64 * 1024;
const CHUNK = 32 * 1024;

/** The control words' layout: as in the node control segment, word 4 is the job's abort word. */
const ABORT_WORD = 4;
const FIRST_WORD = 8;

interface Node {
  members: ShmCollectives[];
  /** The control words: the abort word, then from FIRST_WORD acks, data, doorbells and sleeping words, n of each. */
  i32: Int32Array;
  door(member: number): number;
  sleeping(member: number): number;
  /** Per member, which members' arenas it mapped. */
  mapped: Array<Set<number>>;
  rings: Array<{ to: number; wake: number }>;
}

function node(n: number, opts: { bank?: number; chunk?: number; slot?: number } = {}): Node {
  const bank = opts.bank ?? BANK;
  const scratchBytes = 2 * bank;
  const slot = opts.slot ?? 1;
  const i32 = new Int32Array(new SharedArrayBuffer(4 * (FIRST_WORD + 4 * n)));
  const rings: Array<{ to: number; wake: number }> = [];
  const door = (r: number): number => FIRST_WORD + 2 * n + r;
  const sleeping = (r: number): number => FIRST_WORD + 3 * n + r;
  const ctrl: CollectiveControl = { i32, ring: (to, wake) => void rings.push({ to, wake }), doorIndex: door, sleepingIndex: sleeping };
  const arenas = Array.from({ length: n }, () => new ArrayBuffer((slot + 1) * scratchBytes));
  const mapped = Array.from({ length: n }, () => new Set<number>());
  const members = Array.from(
    { length: n },
    (_, me) =>
      new ShmCollectives({
        ctrl,
        me,
        size: n,
        worldRanks: Array.from({ length: n }, (_, j) => 10 + j),
        ackIndex: Array.from({ length: n }, (_, j) => FIRST_WORD + j),
        dataIndex: Array.from({ length: n }, (_, j) => FIRST_WORD + n + j),
        localRanks: Array.from({ length: n }, (_, j) => j),
        scratch: (j) => (mapped[me]!.add(j), arenas[j]!),
        scratchOffset: slot * scratchBytes,
        scratchBytes,
        chunkBytes: opts.chunk ?? CHUNK,
      }),
  );
  return { members, mapped, rings, i32, door, sleeping };
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown } | { ok: null };

/** A small deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Steps members' generators, keeping each one's pending wait across calls of
 * settle(): each pass visits the members in a random order and skips some
 * (slow ranks); when such a pass moves nobody, a full pass decides whether
 * they are stuck (their outcome then stays { ok: null }).
 */
class Sim<T> {
  readonly out: Array<Outcome<T>>;
  readonly #gens: Array<Steps<T>>;
  readonly #waiting: Array<Ready | null>;
  readonly #random: () => number;

  constructor(gens: Array<Steps<T>>, seed = 1) {
    this.#gens = gens;
    this.out = gens.map(() => ({ ok: null }));
    this.#waiting = gens.map(() => null);
    this.#random = rng(seed);
  }

  #step(i: number): boolean {
    if (this.out[i]!.ok !== null) return false;
    const w = this.#waiting[i];
    if (w !== null && w !== undefined && !w()) return false;
    try {
      const r = this.#gens[i]!.next();
      if (r.done === true) this.out[i] = { ok: true, value: r.value };
      else this.#waiting[i] = r.value;
    } catch (error) {
      this.out[i] = { ok: false, error };
    }
    return true;
  }

  /** Runs `members` (all by default) until they are done or none can move. */
  settle(members: number[] = this.#gens.map((_, i) => i)): Array<Outcome<T>> {
    for (let pass = 0; pass < 10_000_000; pass++) {
      if (members.every((i) => this.out[i]!.ok !== null)) return this.out;
      const order = [...members].sort(() => this.#random() - 0.5);
      let moved = false;
      for (const i of order) if (this.#random() < 0.7 && this.#step(i)) moved = true;
      if (!moved) {
        for (const i of order) if (this.#step(i)) moved = true;
        if (!moved) return this.out;
      }
    }
    throw new Error('the schedule did not settle');
  }
}

function drive<T>(gens: Array<Steps<T>>, seed = 1): Array<Outcome<T>> {
  return new Sim(gens, seed).settle();
}

/** Runs `body` on every member; returns their results, failing the test on any error or stall. */
function run<T>(nd: Node, body: (e: ShmCollectives, me: number) => Steps<T>, seed = 1): T[] {
  return drive(
    nd.members.map((e, me) => body(e, me)),
    seed,
  ).map((o, me) => {
    if (o.ok === true) return o.value;
    if (o.ok === false) throw o.error;
    throw new Error(`member ${me} is stuck`);
  });
}

describe('shared-memory collectives on plain memory', () => {
  it('barrier: nobody leaves before the last member arrives', () => {
    const nd = node(4);
    const sim = new Sim(nd.members.map((e) => e.barrier()));
    // Members 0..2 arrive; member 3 has not called yet.
    expect(sim.settle([0, 1, 2]).every((o) => o.ok === null)).toBe(true);
    expect(sim.settle().every((o) => o.ok === true)).toBe(true);
    // The members waited for acks (WAKE_ACK) and rang the others for them.
    expect(nd.rings.filter((r) => r.wake === WAKE_ACK).length).toBe(4 * 3);
    // Many barriers in a row, every schedule.
    for (let seed = 1; seed <= 5; seed++) {
      run(nd, function* (e) {
        for (let i = 0; i < 20; i++) yield* e.barrier();
      }, seed);
    }
  });

  class Wide extends Float64Array {}
  it('bcast: typed arrays in place, msgpack values, and values of several rounds', () => {
    const nd = node(4);
    const big = Float64Array.from({ length: 25_000 }, (_, i) => i * 0.5); // 200 kB: 4 rounds over 2 slots
    const got = run(nd, function* (e, me) {
      const a = me === 2 ? Int32Array.of(7, 8, 9) : new Int32Array(3);
      const r1 = yield* e.bcast(a, 2);
      expect(r1).toBe(a);
      expect([...a]).toEqual([7, 8, 9]);
      const r2 = yield* e.bcast(me === 0 ? { hello: 'world', n: [1, 2] } : undefined, 0);
      const b = me === 3 ? big : new Float64Array(big.length);
      yield* e.bcast(b, 3);
      const r4 = yield* e.bcast(me === 1 ? Uint16Array.of(1, 2) : null, 1);
      // A subclass of a typed array, on any rank, as its base type; in several rounds too.
      const sub = new Wide(big.length);
      if (me === 0) sub.set(big);
      yield* e.bcast(sub, 0);
      return { r2, b, r4, sub };
    });
    for (const g of got) {
      expect(g.r2).toEqual({ hello: 'world', n: [1, 2] });
      expect(g.b).toEqual(big);
      expect(g.r4).toEqual(Uint16Array.of(1, 2));
      expect([...g.sub.subarray(0, 3)]).toEqual([0, 0.5, 1]);
      expect(g.sub[big.length - 1]).toBe(big[big.length - 1]);
    }
  });

  it('gather and allgather: concatenated when typed of one type, else arrays; lengths may differ', () => {
    const nd = node(5);
    const got = run(nd, function* (e, me) {
      const typed = yield* e.gather(Float32Array.from({ length: me + 1 }, () => me), 1);
      const mixed = yield* e.gather(me % 2 === 0 ? `m${me}` : Int8Array.of(me), null);
      // 20-100 kB each: several rounds, and members with fewer rounds of data still take part.
      const large = yield* e.gather(Uint8Array.from({ length: 20_000 * (me + 1) }, (_, i) => (i + me) & 255), null);
      return { typed, mixed, large };
    });
    const want = new Float32Array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4]);
    got.forEach((g, me) => {
      expect(g.typed).toEqual(me === 1 ? want : null);
      expect(g.mixed).toEqual(['m0', Int8Array.of(1), 'm2', Int8Array.of(3), 'm4']);
      const large = g.large as Uint8Array;
      expect(large.length).toBe(20_000 * 15);
      let off = 0;
      for (let j = 0; j < 5; j++) {
        for (let i = 0; i < 20_000 * (j + 1); i += 997) expect(large[off + i]).toBe((i + j) & 255);
        off += 20_000 * (j + 1);
      }
    });
    // Members map only the arenas they read: a broadcast's receivers, the root's only.
    const nd2 = node(4);
    run(nd2, (e) => e.bcast(Int32Array.of(1), 2));
    for (let j = 0; j < 4; j++) expect([...nd2.mapped[j]!]).toEqual([2]);
  });

  it('scatter and alltoall: typed parts, msgpack parts, and parts of several rounds', () => {
    const nd = node(4);
    const got = run(nd, function* (e, me) {
      const s1 = yield* e.scatter(me === 2 ? partsOf(Int16Array.from({ length: 12 }, (_, i) => i), 4, 'scatter') : null, 2);
      const s2 = yield* e.scatter(me === 0 ? partsOf(['a', { b: 1 }, [2], null], 4, 'scatter') : null, 0);
      const s3 = yield* e.scatter(me === 1 ? partsOf(Float64Array.from({ length: 4 * 12_000 }, (_, i) => i), 4, 'scatter') : null, 1);
      const a1 = yield* e.alltoall(partsOf(Int32Array.from({ length: 8 }, (_, i) => me * 100 + i), 4, 'alltoall'));
      const a2 = yield* e.alltoall(partsOf([0, 1, 2, 3].map((q) => (q === me ? `self ${me}` : Uint8Array.of(me, q))), 4, 'alltoall'));
      // Parts of different lengths per pair, 0 to 90 kB.
      const a3 = yield* e.alltoall(partsOf([0, 1, 2, 3].map((q) => Uint32Array.from({ length: 7_500 * ((me + q) % 4) }, (_, i) => me * 1e6 + q * 1e5 + i)), 4, 'alltoall'));
      return { s1, s2, s3, a1, a2, a3 };
    });
    got.forEach((g, me) => {
      expect(g.s1).toEqual(Int16Array.from({ length: 3 }, (_, i) => 3 * me + i));
      expect(g.s2).toEqual(['a', { b: 1 }, [2], null][me]);
      expect(g.s3).toEqual(Float64Array.from({ length: 12_000 }, (_, i) => me * 12_000 + i));
      expect(g.a1).toEqual(Int32Array.from([0, 1, 2, 3].flatMap((p) => [p * 100 + 2 * me, p * 100 + 2 * me + 1])));
      expect(g.a2).toEqual([0, 1, 2, 3].map((p) => (p === me ? `self ${me}` : Uint8Array.of(p, me))));
      expect(g.a3).toEqual(Uint32Array.from([0, 1, 2, 3].flatMap((p) => Array.from({ length: 7_500 * ((p + me) % 4) }, (_, i) => p * 1e6 + me * 1e5 + i))));
    });
  });
});

type Ctor = { new (n: number): TypedArray; readonly name: string };
const TYPES: Ctor[] = [Float64Array, Float32Array, Int32Array, Uint32Array, Int16Array, Uint8Array, BigInt64Array, BigUint64Array];
const FLOATS = new Set<Ctor>([Float64Array, Float32Array]);

/** Member `me`'s element i: small values (0..3), so products stay exact; zeros make land/lor mean something. */
function contribution(C: Ctor, me: number, n: number): TypedArray {
  const a = new C(n);
  const big = a instanceof BigInt64Array || a instanceof BigUint64Array;
  for (let i = 0; i < n; i++) {
    const v = (me * 7 + i * 3 + (i >> 4)) % 4;
    (a as unknown as Array<number | bigint>)[i] = big ? BigInt(v) : v;
  }
  return a;
}

/** The reference fold, element by element in rank order, stored into the array's own type at each step. */
function fold(op: ReduceOp, parts: TypedArray[]): TypedArray {
  const C = parts[0]!.constructor as Ctor;
  const out = new C(parts[0]!.length);
  const d = out as unknown as Array<number | bigint>;
  for (let i = 0; i < out.length; i++) d[i] = (parts[0] as unknown as Array<number | bigint>)[i]!;
  for (const p of parts.slice(1)) {
    const s = p as unknown as Array<number | bigint>;
    for (let i = 0; i < out.length; i++) {
      const x = d[i]!;
      const y = s[i]!;
      const zero = typeof x === 'bigint' ? 0n : 0;
      const one = typeof x === 'bigint' ? 1n : 1;
      const num = (f: (a: number, b: number) => number, g: (a: bigint, b: bigint) => bigint): number | bigint => (typeof x === 'bigint' ? g(x, y as bigint) : f(x, y as number));
      switch (op) {
        case 'sum': d[i] = num((a, b) => a + b, (a, b) => a + b); break;
        case 'prod': d[i] = num((a, b) => a * b, (a, b) => a * b); break;
        case 'min': d[i] = y < x ? y : x; break;
        case 'max': d[i] = y > x ? y : x; break;
        case 'band': d[i] = num((a, b) => a & b, (a, b) => a & b); break;
        case 'bor': d[i] = num((a, b) => a | b, (a, b) => a | b); break;
        case 'bxor': d[i] = num((a, b) => a ^ b, (a, b) => a ^ b); break;
        case 'land': d[i] = x !== zero && y !== zero ? one : zero; break;
        case 'lor': d[i] = x !== zero || y !== zero ? one : zero; break;
      }
    }
  }
  return out;
}

/** The first index where a and b differ (or -1): toEqual is slow on long arrays. */
function firstDifference(a: TypedArray, b: TypedArray): number {
  if (a.constructor !== b.constructor || a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function opsFor(C: Ctor): ReduceOp[] {
  return REDUCE_OPS.filter((op) => !(FLOATS.has(C) && (op === 'band' || op === 'bor' || op === 'bxor')));
}

describe('shared-memory reductions on plain memory', () => {
  it('allreduce, reduce and scan: every operator on every type, small (one step)', () => {
    const n = 4;
    const nd = node(n);
    for (const C of TYPES) {
      for (const op of opsFor(C)) {
        const len = 37;
        const inputs = Array.from({ length: n }, (_, me) => contribution(C, me, len));
        const got = run(nd, function* (e, me) {
          const all = contribution(C, me, len);
          yield* e.reduce(all, op, KIND.allreduce, 0, all, null);
          const red = contribution(C, me, len);
          const r = yield* e.reduce(red, op, KIND.reduce, 3, me === 3 ? red : null, null);
          const sc = contribution(C, me, len);
          yield* e.reduce(sc, op, KIND.scan, 0, sc, null);
          return { all, red, r, sc };
        });
        got.forEach((g, me) => {
          const what = `${C.name} ${op} member ${me}`;
          expect(g.all, what).toEqual(fold(op, inputs));
          expect(g.sc, what).toEqual(fold(op, inputs.slice(0, me + 1)));
          if (me === 3) {
            expect(g.r, what).toBe(g.red);
            expect(g.red, what).toEqual(fold(op, inputs));
          } else {
            expect(g.r, what).toBe(null);
            expect(g.red, what).toEqual(inputs[me]); // a non-root's buffer is left alone
          }
        });
      }
    }
  });

  it('large allreduce goes through reduce-scatter and allgather, over several rounds, uneven segments', () => {
    for (const n of [3, 4]) {
      const nd = node(n);
      for (const [C, len] of [[Float64Array, 10_001], [Int32Array, 30_011], [BigInt64Array, 6_007], [Uint8Array, 70_001]] as Array<[Ctor, number]>) {
        expect(len * new C(1).BYTES_PER_ELEMENT).toBeGreaterThan(2 * ALLREDUCE_FLAT_BYTES);
        for (const op of ['sum', 'max', 'lor'] as const) {
          const inputs = Array.from({ length: n }, (_, me) => contribution(C, me, len));
          const got = run(nd, function* (e, me) {
            const buf = contribution(C, me, len);
            yield* e.reduce(buf, op, KIND.allreduce, 0, buf, null);
            return buf;
          }, len + n);
          const want = fold(op, inputs);
          // Two publications per member in a round of more than ALLREDUCE_FLAT_BYTES (contributions,
          // then its reduced segment: the reduce-scatter path), one in a smaller last round.
          const bpe = new C(1).BYTES_PER_ELEMENT;
          const perRound = 32_704 / bpe; // half a 64 KiB slot's data area
          let publications = 0;
          for (let lo = 0; lo < len; lo += perRound) publications += (Math.min(len - lo, perRound) * bpe > ALLREDUCE_FLAT_BYTES ? 2 : 1) * n;
          expect(publications).toBeGreaterThan(2 * n);
          expect(nd.rings.filter((r) => r.wake === WAKE_SYNC).length).toBe(publications * (n - 1));
          nd.rings.length = 0;
          got.forEach((g, me) => expect(firstDifference(g, want), `${n} members, ${C.name} ${op}, member ${me}`).toBe(-1));
        }
      }
    }
  });

  it('a scalar reduction returns scalar(buf); a float bitwise reduction is a TypeError', () => {
    const nd = node(3);
    const got = run(nd, function* (e, me) {
      const buf = Float64Array.of(me + 0.5);
      return yield* e.reduce<number | null>(buf, 'sum', KIND.allreduce, 0, 0, (a) => a[0] as number);
    });
    expect(got).toEqual([4.5, 4.5, 4.5]);
    const bad = drive(nd.members.map((e) => e.reduce(new Float32Array(2), 'bxor', KIND.allreduce, 0, null, null)));
    for (const o of bad) expect(o.ok === false && o.error instanceof TypeError).toBe(true);
  });
});

describe('the native fast paths (native/coll.cc) and the TypeScript steps, mixed', () => {
  /** How many fast paths completed their collective, and how many left it to the steps. */
  const tally = { done: 0, left: 0 };
  /** A member's collective as a program calls it: the fast path first (polling 0 ns), the steps for what it left. */
  function* viaFast<T>(tryFast: () => boolean, steps: () => Steps<T>, done: () => T): Steps<T> {
    if (tryFast()) {
      tally.done++;
      return done();
    }
    tally.left++;
    return yield* steps();
  }
  afterAll(() => {
    // Both ways were taken: the schedules let some fast paths finish alone and stopped others half-way.
    expect(tally.done).toBeGreaterThan(50);
    expect(tally.left).toBeGreaterThan(50);
  });

  it('a Buffer reduces as Uint8Array whichever way each member takes (the fast path, the steps, or both)', () => {
    for (let seed = 1; seed <= 6; seed++) {
      const nd = node(3);
      const got = run(
        nd,
        (e, me) => {
          const b = Buffer.from([me, 1, 200]);
          return viaFast(() => e.tryReduce(b, 'sum', KIND.allreduce, 0, 0, Uint8Array), () => e.reduce(b, 'sum', KIND.allreduce, 0, b, null), () => b);
        },
        seed,
      );
      for (const b of got) expect([...b]).toEqual([3, 3, (600 % 256)]);
    }
  });

  it('barriers: fast and slow members in any order; a fast member that must wait is finished by the steps', () => {
    const nd = node(4);
    for (let seed = 1; seed <= 6; seed++) {
      const arrivals: number[][] = [];
      run(nd, function* (e, me) {
        for (let i = 0; i < 30; i++) {
          (arrivals[i] ??= []).push(me);
          if ((i + me + seed) % 3 === 0) yield* e.barrier();
          else yield* viaFast(() => e.tryBarrier(0), () => e.barrier(), () => undefined);
        }
      }, seed);
      expect(arrivals.every((a) => a.length === 4)).toBe(true);
    }
    // Nobody passes a barrier before the last member arrives, fast or not.
    const sim = new Sim(nd.members.map((e) => viaFast(() => e.tryBarrier(0), () => e.barrier(), () => 'done')));
    expect(sim.settle([0, 1, 2]).every((o) => o.ok === null)).toBe(true);
    expect(sim.settle().map((o) => o.ok)).toEqual([true, true, true, true]);
  });

  it('small allreduce, reduce and scan: every operator on every type, bitwise the steps\' results', () => {
    const n = 3;
    const nd = node(n);
    let seed = 0;
    for (const C of TYPES) {
      for (const op of opsFor(C)) {
        const len = 5;
        const inputs = Array.from({ length: n }, (_, me) => contribution(C, me, len));
        const got = run(nd, function* (e, me) {
          const fast = (kind: ReductionKind, root: number, buf: TypedArray, result: unknown): Steps<unknown> =>
            (me + seed) % 2 === 0 ? viaFast(() => e.tryReduce(buf, op, kind, root, 0), () => e.reduce(buf, op, kind, root, result, null), () => result) : e.reduce(buf, op, kind, root, result, null);
          const all = contribution(C, me, len);
          yield* fast(KIND.allreduce, 0, all, all);
          const red = contribution(C, me, len);
          const r = yield* fast(KIND.reduce, 1, red, me === 1 ? red : null);
          const sc = contribution(C, me, len);
          yield* fast(KIND.scan, 0, sc, sc);
          return { all, red, r, sc };
        }, ++seed);
        got.forEach((g, me) => {
          const what = `${C.name} ${op} member ${me}`;
          expect(g.all, what).toEqual(fold(op, inputs));
          expect(g.sc, what).toEqual(fold(op, inputs.slice(0, me + 1)));
          expect(g.red, what).toEqual(me === 1 ? fold(op, inputs) : inputs[me]);
          expect(g.r, what).toBe(me === 1 ? g.red : null);
        });
      }
    }
  });

  it('small broadcasts of typed arrays: fast and slow members mixed, receivers of any value; a mismatch is named', () => {
    const nd = node(4);
    const got = run(nd, function* (e, me) {
      const out: unknown[] = [];
      for (let i = 0; i < 30; i++) {
        const root = i % 4;
        const buf = me === root ? Float64Array.of(i, root, -i) : new Float64Array(3);
        if ((i + me) % 3 === 0) out.push(yield* e.bcast(buf, root));
        else out.push(yield* viaFast(() => e.tryBcast(buf, root, 0), () => e.bcast(buf, root), () => buf));
        expect([...buf], `round ${i} member ${me}`).toEqual([i, root, -i]);
      }
      // A receiver that passes no array gets a new one from the steps, whatever way the root went.
      const big = me === 2 ? BigInt64Array.of(5n, -7n) : null;
      out.push(yield* (me === 2 ? viaFast(() => e.tryBcast(big!, 2, 0), () => e.bcast(big, 2), () => big) : e.bcast(big, 2)));
      return out.at(-1);
    });
    for (const g of got) expect(g).toEqual(BigInt64Array.of(5n, -7n));
    // Members map only the arenas they read, the fast path too: a broadcast's receivers, the root's only.
    expect(nd.mapped[1]!.has(3)).toBe(true);
    const nd2 = node(4);
    run(nd2, (e, me) => { const a = me === 2 ? Int32Array.of(1) : new Int32Array(1); return viaFast(() => e.tryBcast(a, 2, 0), () => e.bcast(a, 2), () => a); });
    for (let j = 0; j < 4; j++) expect([...nd2.mapped[j]!].every((m) => m === 2)).toBe(true);
    const outcomes = drive(
      node(3).members.map((e, me) => {
        const buf = new Float32Array(me === 1 ? 3 : 2);
        return viaFast(() => e.tryBcast(buf, 0, 0), () => e.bcast(buf, 0), () => buf);
      }),
    );
    const errors = outcomes.flatMap((o) => (o.ok === false ? [o.error as Error] : []));
    expect(errors.map((e) => e.message).join('\n')).toMatch(/broadcasts 8 bytes of Float32Array into this rank's Float32Array of 12 bytes/);
  });

  it('a fast path polls its budget, then leaves the round to the steps; it rings sleepers; one that cannot fit a slot takes no round', () => {
    const nd = node(3, { bank: 32 * 1024, chunk: 2048 }); // 8 slots of 8 KiB
    const [a, b, c] = nd.members as [ShmCollectives, ShmCollectives, ShmCollectives];
    // Member 0 alone: a barrier and an allreduce poll 200 us in vain and return undone.
    const t0 = performance.now();
    expect(a.tryBarrier(200_000)).toBe(false);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(0.15);
    // Member 2 asleep for acks: member 1's native arrival rings its doorbell (and clears its sleeping word).
    Atomics.store(nd.i32, nd.sleeping(2), WAKE_ACK);
    const door = Atomics.load(nd.i32, nd.door(2));
    const sims = new Sim([a.barrier(), viaFast(() => b.tryBarrier(0), () => b.barrier(), () => undefined), c.barrier()]);
    expect(sims.settle().map((o) => o.ok)).toEqual([true, true, true]);
    expect([Atomics.load(nd.i32, nd.door(2)), Atomics.load(nd.i32, nd.sleeping(2))]).toEqual([door + 1, 0]);
    // A broadcast larger than a slot (capacity under 16 KiB here) is not the fast path's: no round taken.
    const big = new Float64Array(1500); // 12,000 bytes: under 16 KiB, over this layout's slot
    expect(big.byteLength).toBeLessThan(ALLREDUCE_FLAT_BYTES);
    expect(c.tryBcast(big, 2, 0)).toBe(false);
    const got = run(nd, function* (e, me) {
      const buf = me === 2 ? Float64Array.from({ length: 1500 }, (_, i) => i) : new Float64Array(1500);
      yield* e.bcast(buf, 2);
      yield* e.barrier();
      return buf[1499];
    });
    expect(got).toEqual([1499, 1499, 1499]);
  });

  it('a synchronous form sleeps on its doorbell after the poll, for its doze (no CPU), then leaves the round to the steps; the abort word ends the sleep', () => {
    const nd = node(2);
    const [a, b] = nd.members as [ShmCollectives, ShmCollectives];
    const one = (): Float64Array => Float64Array.of(1);
    // The job aborting: a barrier that would doze 20 s returns undone at once (its steps then see the abort).
    Atomics.store(nd.i32, ABORT_WORD, 1);
    let t0 = performance.now();
    expect(a.tryBarrier(0, 20e9)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(5000);
    Atomics.store(nd.i32, ABORT_WORD, 0);
    expect(b.tryBarrier(0, 20e9)).toBe(true); // member 0 is there: no wait
    expect(new Sim([a.barrier()]).settle().map((o) => o.ok)).toEqual([true]);
    // Member 0 alone in an allreduce, dozing 60 ms: asleep for the others' data (its sleeping word
    // cleared after), then undone; member 1 and the steps finish it.
    const mine = one();
    let cpu = process.cpuUsage();
    t0 = performance.now();
    expect(a.tryReduce(mine, 'sum', KIND.allreduce, 0, 0, Float64Array, 60e6)).toBe(false);
    const slept = performance.now() - t0;
    cpu = process.cpuUsage(cpu);
    expect(slept).toBeGreaterThanOrEqual(55);
    expect((cpu.user + cpu.system) / 1000).toBeLessThan(slept / 2);
    expect(Atomics.load(nd.i32, nd.sleeping(0)) & WAKE_BITS).toBe(0);
    const theirs = Float64Array.of(2);
    expect(b.tryReduce(theirs, 'sum', KIND.allreduce, 0, 0, Float64Array, 20e9)).toBe(true);
    expect(new Sim([a.reduce(mine, 'sum', KIND.allreduce, 0, mine, null)]).settle().map((o) => o.ok)).toEqual([true]);
    expect([mine[0], theirs[0]]).toEqual([3, 3]);
  });

  it('resume() takes up the round a fast path left, again and again, and leaves it to the steps when it cannot finish', () => {
    const nd = node(3);
    const [a, b, c] = nd.members as [ShmCollectives, ShmCollectives, ShmCollectives];
    // An allreduce member 0 began alone: resumed in vain (nothing new to do: its contribution stays published) ...
    const mine = Float64Array.of(1);
    expect(a.tryReduce(mine, 'sum', KIND.allreduce, 0, 0)).toBe(false);
    expect(a.resumable).toBe(true);
    // Members 1 and 2 asleep meanwhile: a resume in vain neither rewrites the slot member 0
    // published nor rings them again (their doorbells stay, their sleeping words stay set).
    const asleep = (): void => [1, 2].forEach((j) => Atomics.store(nd.i32, nd.sleeping(j), WAKE_SYNC | WAKE_ACK));
    const doors = (): number[] => [1, 2].map((j) => Atomics.load(nd.i32, nd.door(j)));
    asleep();
    const before = doors();
    expect(a.resume(0, 0)).toBe(false);
    expect(a.resume(0, 0)).toBe(false);
    expect(doors()).toEqual(before);
    expect([1, 2].map((j) => Atomics.load(nd.i32, nd.sleeping(j)))).toEqual([WAKE_SYNC | WAKE_ACK, WAKE_SYNC | WAKE_ACK]);
    [1, 2].forEach((j) => Atomics.store(nd.i32, nd.sleeping(j), 0));
    // ... until the others are in: then done, its result in its array.
    const theirs = [Float64Array.of(2), Float64Array.of(4)];
    expect(b.tryReduce(theirs[0]!, 'sum', KIND.allreduce, 0, 0)).toBe(false); // member 2 not there yet
    expect(c.tryReduce(theirs[1]!, 'sum', KIND.allreduce, 0, 0)).toBe(true);
    expect(a.resume(0, 0)).toBe(true);
    expect(b.resume(0, 0)).toBe(true);
    expect([mine[0], theirs[0]![0], theirs[1]![0]]).toEqual([7, 7, 7]);
    expect(a.resume(0, 0)).toBe(false); // nothing left to resume
    expect(a.resumable).toBe(false);
    // A reduction too large for one round takes none: nothing to resume (the promise form runs the steps at once).
    expect(a.tryReduce(new Float64Array(ALLREDUCE_FLAT_BYTES), 'sum', KIND.allreduce, 0, 0)).toBe(false);
    expect(a.resumable).toBe(false);
    // A barrier left by resume() to the steps, which finish it; then a broadcast resumed by a reader.
    expect(a.tryBarrier(0)).toBe(false);
    asleep();
    const atBarrier = doors();
    expect(a.resume(0, 0)).toBe(false); // its arrival stays stored, nobody woken again
    expect(doors()).toEqual(atBarrier);
    [1, 2].forEach((j) => Atomics.store(nd.i32, nd.sleeping(j), 0));
    expect(new Sim([a.barrier(), b.barrier(), c.barrier()]).settle().map((o) => o.ok)).toEqual([true, true, true]);
    const got = new Float64Array(2);
    expect(b.tryBcast(got, 0, 0)).toBe(false);
    expect(b.resumable).toBe(true);
    expect(a.tryBcast(Float64Array.of(5, 6), 0, 0)).toBe(true);
    expect(b.resume(0, 0)).toBe(true);
    expect([...got]).toEqual([5, 6]);
    const third = new Float64Array(2);
    expect(c.tryBcast(third, 0, 0)).toBe(true);
    expect([...third]).toEqual([5, 6]);
    // A first call publishes even when our data word happens to hold its round's stamp already
    // (rounds wrap: 4c + 1 recurs every 2^30 rounds): only resume() of a published round skips.
    const next = Atomics.load(nd.i32, FIRST_WORD) + 1; // member 0's ack: the last round it finished
    Atomics.store(nd.i32, FIRST_WORD + 3, (next * 4 + 1) | 0);
    asleep();
    const fresh = doors();
    expect(a.tryReduce(Float64Array.of(1), 'sum', KIND.allreduce, 0, 0)).toBe(false);
    expect(doors()).toEqual(fresh.map((d) => d + 1));
    expect(b.tryReduce(Float64Array.of(2), 'sum', KIND.allreduce, 0, 0)).toBe(false);
    const last = Float64Array.of(4);
    expect(c.tryReduce(last, 'sum', KIND.allreduce, 0, 0)).toBe(true);
    expect(last[0]).toBe(7);
  });

  it('many small allreduces in a row reuse the banks safely; a larger one takes the steps; a mismatch is named', () => {
    const nd = node(4);
    const got = run(nd, function* (e, me) {
      const sums: number[] = [];
      for (let i = 0; i < 40; i++) {
        // 16, 32 and 40 bytes: in the header's line (REDUCTION_INLINE_BYTES) and after the header, in one slot's turns.
        const buf = Float64Array.from({ length: [2, 4, 5][i % 3]! }, (_, k) => (k === 0 ? me + i : 1));
        yield* viaFast(() => e.tryReduce(buf, 'sum', KIND.allreduce, 0, 0), () => e.reduce(buf, 'sum', KIND.allreduce, 0, buf, null), () => buf);
        sums.push(buf[0]!, buf.at(-1)!);
      }
      const big = new Float64Array(8192).fill(me); // 64 KiB: more than one flat round
      expect(e.tryReduce(big, 'max', KIND.allreduce, 0, 0)).toBe(false);
      yield* e.reduce(big, 'max', KIND.allreduce, 0, big, null);
      return { sums, big: big[8191] };
    });
    for (const g of got) {
      expect(g.sums).toEqual(Array.from({ length: 40 }, (_, i) => [6 + 4 * i, 4]).flat());
      expect(g.big).toBe(3);
    }
    const outcomes = drive(
      node(3).members.map((e, me) => {
        const buf = new Float64Array(me === 2 ? 2 : 1);
        return viaFast(() => e.tryReduce(buf, 'sum', KIND.allreduce, 0, 0), () => e.reduce(buf, 'sum', KIND.allreduce, 0, buf, null), () => buf);
      }),
    );
    const errors = outcomes.flatMap((o) => (o.ok === false ? [o.error as Error] : []));
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.map((e) => e.message).join('\n')).toMatch(/passed (8|16) bytes, this rank (8|16)/);
  });
});

describe('shared-memory collectives detect mismatched calls', () => {
  /** Runs per-member bodies; returns the errors (at least one member must fail). */
  function mismatch(n: number, body: (e: ShmCollectives, me: number) => Steps<unknown>): Error[] {
    const nd = node(n);
    const outcomes = drive(nd.members.map((e, me) => body(e, me)));
    const errors = outcomes.flatMap((o) => (o.ok === false ? [o.error as Error] : []));
    expect(errors.length).toBeGreaterThan(0);
    for (const e of errors) expect(isMprunError(e, 'ERR_MPRUN_COLLECTIVE_MISMATCH'), String(e)).toBe(true);
    return errors;
  }

  it('names the member, its world rank and what differs', () => {
    const kinds = mismatch(3, (e, me) => (me === 1 ? e.gather(1, 0) : e.gather(1, null)));
    expect(kinds.map((e) => e.message).join('\n')).toMatch(/team rank 1 \(world rank 11\) called gather where this rank called allgather/);
    const roots = mismatch(3, (e, me) => e.gather(1, me === 2 ? 1 : 0));
    expect(roots.map((e) => e.message).join('\n')).toMatch(/gave root/);
    const lengths = mismatch(3, (e, me) => e.reduce(new Float64Array(me === 0 ? 8 : 16), 'sum', KIND.allreduce, 0, null, null));
    expect(lengths[0]!.message).toMatch(/team rank \d \(world rank 1\d\) passed (64|128) bytes, this rank (64|128) \(seen by team rank \d/);
    const types = mismatch(3, (e, me) => e.reduce(me === 2 ? new Int32Array(4) : new Float32Array(4), 'sum', KIND.allreduce, 0, null, null));
    expect(types[0]!.message).toMatch(/passed (Int32Array|Float32Array), this rank (Int32Array|Float32Array)/);
    const ops = mismatch(2, (e, me) => e.reduce(new Int32Array(4), me === 0 ? 'sum' : 'max', KIND.allreduce, 0, null, null));
    expect(ops[0]!.message).toMatch(/reduces with operator #/);
    const reduceRoot = mismatch(3, (e, me) => e.reduce(new Int32Array(4), 'sum', KIND.reduce, me === 0 ? 0 : 1, null, null));
    expect(reduceRoot.map((e) => e.message).join('\n')).toMatch(/gave root/);
    const into = mismatch(2, (e, me) => e.bcast(me === 0 ? new Float64Array(4) : new Float64Array(3), 0));
    expect(into[0]!.message).toMatch(/broadcasts 32 bytes of Float64Array into this rank's Float64Array of 24 bytes/);
    // A reduction where the others broadcast.
    const other = mismatch(3, (e, me) => (me === 0 ? e.bcast(Int32Array.of(1), 0) : e.reduce(new Int32Array(1), 'sum', KIND.allreduce, 0, null, null)));
    expect(other.map((e) => e.message).join('\n')).toMatch(/called bcast where this rank called allreduce/);
  });
});

describe('shared-memory collectives: a header an earlier round left in a slot', () => {
  it('is not taken for this round\'s by a member that called another root (steps and native fast path)', () => {
    for (const native of [false, true]) {
      const nd = node(3); // 2 slots: round 3 uses round 1's
      const outcomes = drive(
        nd.members.map(function* (e, me): Steps<number[]> {
          const got: number[] = [];
          const bcast = function* (root: number): Steps<void> {
            const buf = me === root ? Float64Array.of(10 * got.length + root, 1, 2, 3) : new Float64Array(4);
            if (!(native && e.tryBcast(buf, root, 0))) yield* e.bcast(buf, root);
            got.push(buf[0]!);
          };
          yield* bcast(1);
          yield* bcast(1);
          yield* bcast(me === 2 ? 1 : 0); // member 2 alone names root 1
          yield* bcast(1);
          return got;
        }),
      );
      // Member 2 is stopped with a mismatch, never served round 1's value as round 3's.
      const two = outcomes[2]!;
      expect(two.ok, `native ${native}: ${JSON.stringify(two)}`).toBe(false);
      expect(isMprunError((two as { error: unknown }).error, 'ERR_MPRUN_COLLECTIVE_MISMATCH'), String((two as { error: unknown }).error)).toBe(true);
    }
  });
});

describe('shared-memory collectives: layout and wake-ups', () => {
  it('publishing rings the other members for data, finishing for acks; the bank must fit a slot', () => {
    const nd = node(3);
    run(nd, (e, me) => e.bcast(me === 0 ? 'x' : null, 0));
    const sync = nd.rings.filter((r) => r.wake === WAKE_SYNC);
    expect(sync.map((r) => r.to).sort()).toEqual([1, 2]); // the root published once
    expect(nd.rings.filter((r) => r.wake === WAKE_ACK).length).toBe(3 * 2);
    expect(() => node(64, { bank: 4096, chunk: 4096 })).toThrow(/MPRUN_COLL_BANK of 4096 bytes is too small for a team of 64/);
  });
});

describe('round slots', () => {
  it('are a power of two, so that any run of as many rounds uses distinct slots, across the counter\'s wrap at 2^32 too', () => {
    // The default bank and chunk (7 slots would fit), the tests' small banks, and a few others.
    for (const [bank, chunk] of [[1 << 20, 128 << 10], [BANK, CHUNK], [256 << 10, 16 << 10], [4 << 20, 128 << 10], [3 << 20, 100 << 10]] as const) {
      const i32 = new Int32Array(new SharedArrayBuffer(64));
      const rounds = new ShmRounds({
        ctrl: { i32, ring: () => undefined, doorIndex: () => 0, sleepingIndex: () => 0 },
        me: 0,
        size: 2,
        worldRanks: [0, 1],
        ackIndex: [8, 9],
        dataIndex: [10, 11],
        localRanks: [0, 1],
        scratch: () => new ArrayBuffer(2 * bank),
        scratchOffset: 0,
        scratchBytes: 2 * bank,
        chunkBytes: chunk,
      });
      const n = rounds.slots;
      expect(n & (n - 1), `${n} slots (bank ${bank}, chunk ${chunk})`).toBe(0);
      // The round counter is an int32 that wraps; rounds from 2^32 - 2n on, past 0.
      for (let start = -2 * n; start <= n; start++) {
        const used = new Set<number>();
        for (let k = 0; k < n; k++) used.add(rounds.bank((start + k) | 0));
        expect(used.size, `rounds ${start} to ${start + n - 1} of ${n} slots`).toBe(n);
      }
    }
  });
});
