/**
 * The reductions of MsgCollectives' fast mode, among p participants that
 * reach each other through `Peers` (node leaders for reduce and allreduce,
 * team ranks for scan): binomial reduce, recursive-doubling allreduce for
 * small vectors, Rabenseifner's reduce-scatter + allgather for large ones,
 * recursive-doubling scan. Schedules: schedules.ts.
 *
 * Fold order: whenever two partial results meet, the one covering the lower
 * participants is the left operand (kernel(dst = lower, src = higher)), on both
 * sides of an exchange. So every participant of an allreduce computes bitwise
 * the same result (both partners fold the same two operands in the same
 * order, NaNs and signed zeros included), but the grouping depends on p: float
 * results may differ in the last bits from a run with another node count, and
 * from MPRUN_COLL_REPRODUCIBLE=1's fold in team-rank order.
 */
import type { TypedArray } from '../../core/types.js';
import type { Steps } from './engine.js';
import type { Kernel } from './ops.js';
import { binomial, blockStart, doubling, fromVirtual, halving, scanPartners, toVirtual } from './schedules.js';

/** How an algorithm reaches the other participants of one collective (messages carry and check the call). */
export interface Peers {
  send(to: number, value: unknown): void;
  take(from: number): Steps<unknown>;
}

/** From this many bytes (and at least one element per block), allreduce runs reduce-scatter + allgather instead of recursive doubling. */
export const LARGE_ALLREDUCE_BYTES = 64 * 1024;

function set(dst: TypedArray, src: TypedArray, at: number): void {
  (dst as Float64Array).set(src as Float64Array, at);
}

/** Folds `x` into the partial `acc` with lower-first order: `accLower` says whose operand is on the left. Returns the folded array. */
function fold(k: Kernel, acc: TypedArray, x: TypedArray, accLower: boolean): TypedArray {
  if (accLower) {
    k(acc, 0, x, 0, acc.length);
    return acc;
  }
  k(x, 0, acc, 0, acc.length);
  return x;
}

/** Binomial reduce to participant `root`: its result there, null elsewhere. `acc` is this participant's partial (modified). */
export function* reduceAmong(peers: Peers, p: number, g: number, root: number, acc: TypedArray, k: Kernel): Steps<TypedArray | null> {
  const node = binomial(p, toVirtual(g, root, p));
  // Smallest subtrees first: they finish first. A child covers higher virtual ranks: it is the right operand.
  for (let i = node.children.length - 1; i >= 0; i--) {
    const x = (yield* peers.take(fromVirtual(node.children[i]!.child, root, p))) as TypedArray;
    k(acc, 0, x, 0, acc.length);
  }
  if (node.parent >= 0) {
    peers.send(fromVirtual(node.parent, root, p), acc);
    return null;
  }
  return acc;
}

/** Allreduce among p participants: returns the result (`acc` or another array of its type), bitwise the same everywhere. */
export function* allreduceAmong(peers: Peers, p: number, g: number, acc: TypedArray, k: Kernel): Steps<TypedArray> {
  const d = doubling(p, g);
  if (d.helper >= 0) {
    peers.send(d.helper, acc);
    return (yield* peers.take(d.helper)) as TypedArray;
  }
  if (d.extra >= 0) acc = fold(k, acc, (yield* peers.take(d.extra)) as TypedArray, true);
  if (acc.byteLength >= LARGE_ALLREDUCE_BYTES && acc.length >= d.q) {
    yield* rabenseifner(peers, d.q, g, acc, k);
  } else {
    for (const partner of d.partners) {
      peers.send(partner, acc);
      acc = fold(k, acc, (yield* peers.take(partner)) as TypedArray, g < partner);
    }
  }
  if (d.extra >= 0) peers.send(d.extra, acc);
  return acc;
}

/** Reduce-scatter by recursive halving, then allgather by recursive doubling, among q = 2^k participants; in place on `acc`. */
function* rabenseifner(peers: Peers, q: number, g: number, acc: TypedArray, k: Kernel): Steps<void> {
  const n = acc.length;
  const at = (b: number): number => blockStart(n, q, b);
  const steps = halving(q, g);
  for (const s of steps) {
    peers.send(s.partner, acc.subarray(at(s.give[0]), at(s.give[1])));
    const x = (yield* peers.take(s.partner)) as TypedArray;
    const off = at(s.keep[0]);
    const len = at(s.keep[1]) - off;
    if (g < s.partner) k(acc, off, x, 0, len);
    else {
      k(x, 0, acc, off, len);
      set(acc, x, off);
    }
  }
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i]!;
    peers.send(s.partner, acc.subarray(at(s.keep[0]), at(s.keep[1])));
    set(acc, (yield* peers.take(s.partner)) as TypedArray, at(s.give[0]));
  }
}

/** Inclusive scan among p participants in index order (recursive doubling): this participant's prefix. */
export function* scanAmong(peers: Peers, p: number, r: number, mine: TypedArray, k: Kernel): Steps<TypedArray> {
  let partial = mine.slice() as TypedArray;
  let result = mine.slice() as TypedArray;
  for (const partner of scanPartners(p, r)) {
    peers.send(partner, partial);
    const x = (yield* peers.take(partner)) as TypedArray;
    if (partner < r) {
      // x folds ranks below ours: the left operand of both.
      const t = x.slice() as TypedArray;
      k(t, 0, result, 0, t.length);
      result = t;
      partial = fold(k, partial, x, false);
    } else {
      partial = fold(k, partial, x, true);
    }
  }
  return result;
}
