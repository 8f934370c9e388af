/**
 * The collectives across nodes (MsgCollectives) in one process: p = 1..17
 * simulated members placed on nodes in several ways (by blocks, round-robin,
 * one per node, at random), their messages through an in-memory network that
 * copies like the real one (msgpack), their generators stepped in a seeded
 * random order. Every collective against a serial computation, in both modes;
 * exactly-once delivery of every contribution (one-hot vectors summed); the
 * fast mode's allreduce bitwise equal on every member, the reproducible mode's
 * bitwise the fold in team-rank order; messages over the network per rank in
 * O(log nodes); mismatches detected, not hung.
 */
import { describe, expect, it } from 'vitest';
import { packValue, unpackValue } from '../../core/codec.js';
import type { Message } from '../p2p.js';
import { KIND, partsOf, type Ready, type Steps } from './engine.js';
import { kernel } from './ops.js';
import { MsgCollectives } from './msg.js';
import { LARGE_ALLREDUCE_BYTES } from './msg-reduce.js';
import { ceilLog2 } from './schedules.js';
import { collStats } from './stats.js';
import { splitList } from './msg-lists.js';

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** Team members on nodes, each with a MsgCollectives over an in-memory network. */
function team(nodes: number[], reproducible: boolean | ((r: number) => boolean)): MsgCollectives[] {
  const queues = new Map<string, Message[]>();
  const size = nodes.length;
  const worldRanks = nodes.map((_, r) => 100 + r);
  return nodes.map(
    (_, me) =>
      new MsgCollectives({
        me,
        size,
        worldRanks,
        nodes,
        slot: 3,
        reproducible: typeof reproducible === 'boolean' ? reproducible : reproducible(me),
        messenger: () => ({
          sendInternal: (dest: number, data: unknown, tag: number) => {
            const key = `${dest}:${worldRanks[me]}:${tag}`;
            const q = queues.get(key) ?? [];
            q.push({ data: unpackValue(packValue(data)), source: worldRanks[me]!, tag });
            queues.set(key, q);
          },
          takeInternal: (source: number, tag: number) => queues.get(`${worldRanks[me]}:${source}:${tag}`)?.shift() ?? null,
        }),
      }),
  );
}

/** Steps every member's collective in a seeded random order until all finish; throws on a deadlock. */
function run<T>(gens: Array<Steps<T>>, seed = 1): T[] {
  const next = rng(seed);
  const out: T[] = new Array(gens.length);
  const pending: Array<Ready | null> = gens.map(() => null);
  const done = gens.map(() => false);
  while (done.some((d) => !d)) {
    let moved = false;
    const order = gens.map((_, i) => i).sort(() => next() - 0.5);
    for (const i of order) {
      if (done[i] || (pending[i] !== null && !pending[i]!())) continue;
      const r = gens[i]!.next();
      moved = true;
      if (r.done === true) {
        done[i] = true;
        out[i] = r.value;
      } else pending[i] = r.value;
    }
    if (!moved) throw new Error(`deadlock: members ${done.map((d, i) => (d ? -1 : i)).filter((i) => i >= 0).join(',')} wait`);
  }
  return out;
}

const LAYOUTS: Array<[string, (p: number) => number[]]> = [
  ['2 per node', (p) => Array.from({ length: p }, (_, r) => Math.floor(r / 2))],
  ['round-robin over 3', (p) => Array.from({ length: p }, (_, r) => r % 3)],
  ['one per node', (p) => Array.from({ length: p }, (_, r) => r)],
  ['random', (p) => { const g = rng(p * 7919); return Array.from({ length: p }, () => Math.floor(g() * Math.max(1, p / 2))); }],
];
const PS = Array.from({ length: 17 }, (_, i) => i + 1);

const oneHot = (p: number, r: number): Float64Array => Float64Array.from({ length: p }, (_, i) => (i === r ? 1 : 0));
const ones = (n: number, upto = n - 1): number[] => Array.from({ length: n }, (_, i) => (i <= upto ? 1 : 0));

describe('collectives across nodes (in process)', () => {
  for (const reproducible of [false, true]) {
    for (const [name, layout] of LAYOUTS) {
      it(`every collective for p = 1..17, ${name} (${reproducible ? 'reproducible' : 'fast'} mode)`, () => {
        for (const p of PS) {
          const nodes = layout(p);
          const t = team(nodes, reproducible);
          const what = `${name}, p = ${p}`;
          run(t.map((c) => c.barrier()));
          // Reductions: one-hot vectors sum to ones iff every contribution is folded exactly once.
          for (const root of new Set([0, p - 1, p >> 1])) {
            const bufs = t.map((_, r) => oneHot(p, r));
            const res = run(t.map((c, r) => c.reduce(bufs[r]!, 'sum', KIND.reduce, root, bufs[r]!, null)));
            expect(Array.from(res[root]!), `${what} reduce to ${root}`).toEqual(ones(p));
          }
          const ar = t.map((_, r) => oneHot(p, r));
          run(t.map((c, r) => c.reduce(ar[r]!, 'sum', KIND.allreduce, 0, ar[r]!, null)));
          for (const a of ar) expect(Array.from(a), `${what} allreduce`).toEqual(ones(p));
          const sc = t.map((_, r) => oneHot(p, r));
          run(t.map((c, r) => c.reduce(sc[r]!, 'sum', KIND.scan, 0, sc[r]!, null)));
          sc.forEach((a, r) => expect(Array.from(a), `${what} scan at ${r}`).toEqual(ones(p, r)));
          // Large: the reduce-scatter + allgather path (and max, an order-sensitive kernel).
          if ([1, 2, 3, 5, 8, 12, 17].includes(p)) {
            const n = LARGE_ALLREDUCE_BYTES / 4 + 13;
            const big = t.map((_, r) => Int32Array.from({ length: n }, (_, i) => (i * 31 + r * 7) % 1000));
            run(t.map((c, r) => c.reduce(big[r]!, 'max', KIND.allreduce, 0, big[r]!, null)));
            const want = Int32Array.from({ length: n }, (_, i) => Math.max(...t.map((_, r) => (i * 31 + r * 7) % 1000)));
            for (const b of big) expect(b.every((x, i) => x === want[i]), `${what} large allreduce max`).toBe(true);
            // One-hot at element r (and r + p, ...) of member r: every element sums to i + 1 iff each contribution is folded once.
            const bigSum = t.map((_, r) => Float64Array.from({ length: n }, (_, i) => (i % p === r ? 1 : 0) + i / p));
            run(t.map((c, r) => c.reduce(bigSum[r]!, 'sum', KIND.allreduce, 0, bigSum[r]!, null)));
            for (const b of bigSum) expect(b.every((x, i) => Math.abs(x - (i + 1)) < 1e-6), `${what} large allreduce sum`).toBe(true);
          }
          // Data movement.
          for (const root of new Set([0, p - 1, p >> 1])) {
            const bc = t.map((_, r) => (r === root ? Int16Array.of(1, 2, root) : new Int16Array(3)));
            run(t.map((c, r) => c.bcast(bc[r], root)));
            for (const b of bc) expect(Array.from(b), `${what} bcast from ${root}`).toEqual([1, 2, root]);
            // A subclass of a typed array travels as its base type.
            class Shorts extends Int16Array {}
            const sc = t.map((_, r) => (r === root ? Shorts.of(3, root) : new Shorts(2)));
            run(t.map((c, r) => c.bcast(sc[r], root)));
            for (const b of sc) expect(Array.from(b), `${what} bcast of a subclass from ${root}`).toEqual([3, root]);
            const vals = run(t.map((c, r) => c.bcast(r === root ? { from: root } : null, root)));
            for (const v of vals) expect(v).toEqual({ from: root });
            const g = run(t.map((c, r) => c.gather({ r }, root)));
            g.forEach((v, r) => expect(v, `${what} gather to ${root}`).toEqual(r === root ? t.map((_, j) => ({ r: j })) : null));
            const parts = partsOf(Int32Array.from({ length: 2 * p }, (_, i) => i), p, 'scatter');
            const s = run(t.map((c, r) => c.scatter(r === root ? parts : null, root)));
            s.forEach((v, r) => expect(Array.from(v as Int32Array), `${what} scatter from ${root}`).toEqual([2 * r, 2 * r + 1]));
          }
          const ag = run(t.map((c, r) => c.gather(Int32Array.of(r, r * 10), null)));
          for (const v of ag) expect(Array.from(v as Int32Array), `${what} allgather`).toEqual(t.flatMap((_, j) => [j, j * 10]));
          const at = run(t.map((c, r) => c.alltoall(partsOf(t.map((_, to) => `${r}->${to}`), p, 'alltoall'))));
          at.forEach((v, r) => expect(v).toEqual(t.map((_, src) => `${src}->${r}`)));
        }
      }, 120_000);
    }
  }

  it('lists between leaders go in messages of about 4 MiB at most (one DSM frame each), and arrive whole', () => {
    for (const reproducible of [false, true]) {
      const nodes = [0, 1, 2, 3, 4, 5, 6, 7, 8];
      const t = team(nodes, reproducible);
      const n = 200_000; // 1.6 MB per member
      const before = collStats().messages;
      const ag = run(t.map((c, r) => c.gather(new Float64Array(n).fill(r), null)));
      for (const v of ag) {
        const a = v as Float64Array;
        expect(a.length).toBe(n * nodes.length);
        for (let r = 0; r < nodes.length; r++) expect(a[r * n] === r && a[r * n + n - 1] === r).toBe(true);
      }
      expect(collStats().messages - before).toBeGreaterThan(nodes.length * Math.ceil(Math.log2(nodes.length)));
      const g = run(t.map((c, r) => c.reduce(new Float64Array(n).fill(r), 'sum', KIND.allreduce, 0, null, null)));
      expect(g.length).toBe(nodes.length);
    }
    expect(splitList([1, 'a', 2, 'b', 3, 'c'], 2, 1).map((c) => c.length)).toEqual([2, 2, 2]);
    expect(splitList([], 2, 10)).toEqual([[]]);
    expect(splitList([0, new Uint8Array(100), 1, new Uint8Array(100), 2, new Uint8Array(10)], 2, 150)).toEqual([[0, new Uint8Array(100)], [1, new Uint8Array(100), 2, new Uint8Array(10)]]);
  });

  it('fast mode: an allreduce of floats is bitwise the same on every member; reproducible mode: bitwise the fold in team-rank order', () => {
    const g = rng(42);
    for (const p of [3, 5, 8, 13, 17]) {
      for (const n of [7, LARGE_ALLREDUCE_BYTES / 8 + 5]) {
        const data = Array.from({ length: p }, () => Float64Array.from({ length: n }, () => (g() - 0.5) * 10 ** Math.floor(g() * 12)));
        const serial = data[0]!.slice();
        const k = kernel(Float64Array, 'sum');
        for (let r = 1; r < p; r++) k(serial, 0, data[r]!, 0, n);
        for (const reproducible of [false, true]) {
          const t = team(Array.from({ length: p }, (_, r) => r % 4), reproducible);
          const bufs = data.map((d) => d.slice());
          run(t.map((c, r) => c.reduce(bufs[r]!, 'sum', KIND.allreduce, 0, bufs[r]!, null)), p);
          const same = (a: Float64Array, b: Float64Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
          for (const b of bufs) expect(same(b, bufs[0]!), `p = ${p}, n = ${n}: bitwise the same everywhere`).toBe(true);
          if (reproducible) expect(same(bufs[0]!, serial), `p = ${p}, n = ${n}: bitwise the serial fold`).toBe(true);
        }
      }
    }
  });

  it('float min and max with a NaN give NaN, whoever holds it and however the nodes group the fold (JavaScript and native kernels)', () => {
    for (const [T, op] of [[Float64Array, 'min'], [Float32Array, 'max'], [Float64Array, 'max'], [Float32Array, 'min']] as const) {
      for (const n of [3, 300]) { // 300: the native kernel's length
        for (const nodes of [[0, 1, 1], [0, 0, 1, 2, 2], [0, 1, 2, 3, 0, 1]]) {
          for (let holder = 0; holder < nodes.length; holder++) {
            const t = team(nodes, false);
            const bufs = nodes.map((_, r) => (T as typeof Float64Array).from({ length: n }, (_, i) => (r === holder && i % 2 === 0 ? NaN : r - i)));
            run(t.map((c, r) => c.reduce(bufs[r]!, op, KIND.allreduce, 0, bufs[r]!, null)), holder + 1);
            for (const b of bufs) {
              expect(Number.isNaN(b[0]), `${T.name} ${op} n ${n} nodes ${nodes.join()} NaN at rank ${holder}`).toBe(true);
              expect(b[1], `${T.name} ${op}: elements without a NaN as before`).toBe(op === 'min' ? -1 : nodes.length - 2);
            }
          }
        }
      }
    }
  });

  it('messages a leader sends over the network per collective grow as log2 of the node count', () => {
    for (const P of [2, 4, 8, 16, 5, 12]) {
      const nodes = Array.from({ length: 2 * P }, (_, r) => Math.floor(r / 2));
      const t = team(nodes, false);
      const counts: Record<string, number> = {};
      const measure = (name: string, make: (c: MsgCollectives, r: number) => Steps<unknown>): void => {
        // Members run one at a time: what the counters gained during a member's step, that member sent.
        const per = t.map(() => 0);
        const gens = t.map((c, r) =>
          (function* (inner: Steps<unknown>): Steps<unknown> {
            for (;;) {
              const before = collStats().remoteMessages;
              const x = inner.next();
              per[r]! += collStats().remoteMessages - before;
              if (x.done === true) return x.value;
              yield x.value;
            }
          })(make(c, r)),
        );
        run(gens);
        counts[name] = Math.max(...per);
      };
      measure('barrier', (c) => c.barrier());
      measure('allreduce', (c) => c.reduce(new Float64Array(4), 'sum', KIND.allreduce, 0, null, null));
      measure('large allreduce', (c) => c.reduce(new Float64Array(LARGE_ALLREDUCE_BYTES / 8), 'sum', KIND.allreduce, 0, null, null));
      measure('bcast', (c, r) => c.bcast(r === 0 ? 1 : null, 0));
      measure('reduce', (c) => c.reduce(new Float64Array(4), 'sum', KIND.reduce, 0, null, null));
      measure('allgather', (c, r) => c.gather(r, null));
      const lg = ceilLog2(P);
      expect(counts.barrier).toBe(lg);
      expect(counts.bcast).toBeLessThanOrEqual(lg);
      expect(counts.reduce).toBeLessThanOrEqual(1);
      expect(counts.allgather).toBe(lg);
      expect(counts.allreduce).toBeLessThanOrEqual(Math.floor(Math.log2(P)) + 1);
      expect(counts['large allreduce']).toBeLessThanOrEqual(2 * Math.floor(Math.log2(P)) + 1);
    }
  });

  it('a member that calls another collective, length, type or root fails with a collective mismatch, not a hang', () => {
    const cases: Array<[string, (c: MsgCollectives, r: number, last: boolean) => Steps<unknown>, RegExp]> = [
      ['length', (c, _r, last) => c.reduce(new Float64Array(last ? 16 : 8), 'sum', KIND.allreduce, 0, null, null), /passed (64|128) bytes, this rank (128|64)/],
      ['type', (c, _r, last) => c.reduce(last ? new Int32Array(8) : new Float64Array(8), 'sum', KIND.allreduce, 0, null, null), /passed (Int32Array|Float64Array), this rank (Float64Array|Int32Array)/],
      ['kind', (c, _r, last) => (last ? c.bcast(new Float64Array(8), 0) : c.reduce(new Float64Array(8), 'sum', KIND.allreduce, 0, null, null)), /called (bcast|allreduce) where this rank called (allreduce|bcast)/],
      ['bcast', (c, _r, last) => c.bcast(new Float64Array(last ? 4 : 8), 0), /broadcasts 64 bytes of Float64Array into this rank's Float64Array of 32 bytes/],
      ['root', (c, _r, last) => c.reduce(new Float64Array(8), 'sum', KIND.reduce, last ? 1 : 0, null, null), /gave root (0|1), this rank (1|0)/],
    ];
    for (const [name, make, message] of cases) {
      for (const nodes of [[0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1, 2, 2, 3, 3]]) {
        const t = team(nodes, false);
        expect(() => run(t.map((c, r) => make(c, r, r === nodes.length - 1))), `${name} on ${nodes.join(',')}`).toThrow(message);
      }
    }
    // Ranks that disagree about MPRUN_COLL_REPRODUCIBLE (set on one node only, not with -x).
    for (const nodes of [[0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1, 2, 2, 3, 3]]) {
      const t = team(nodes, (r) => nodes[r] === 1);
      expect(() => run(t.map((c) => c.reduce(new Float64Array(8), 'sum', KIND.allreduce, 0, null, null)))).toThrow(/runs with MPRUN_COLL_REPRODUCIBLE=(0|1), this rank with (1|0)/);
    }
  });
});
