/**
 * Who talks to whom, round by round, in the O(log p) collective algorithms
 * (Thakur, Rabenseifner & Gropp 2005; MPICH's choices). Pure functions of the
 * participant count p and one participant's index, so that every participant
 * computes its own part of one schedule, and tests can check a schedule for
 * every p without running it. Participants are node leaders for the
 * hierarchical collectives (msg.ts), team ranks for the flat scan.
 */

/** ceil(log2 p): the rounds of a dissemination barrier or a binomial tree over p. */
export function ceilLog2(p: number): number {
  let r = 0;
  while (1 << r < p) r++;
  return r;
}

/** The largest power of two not above p (p >= 1). */
export function floorPow2(p: number): number {
  let q = 1;
  while (q * 2 <= p) q *= 2;
  return q;
}

/** Dissemination barrier: in round k, `g` sends to g + 2^k and receives from g - 2^k (mod p). */
export function dissemination(p: number, g: number): Array<{ to: number; from: number }> {
  const rounds: Array<{ to: number; from: number }> = [];
  for (let d = 1; d < p; d *= 2) rounds.push({ to: (g + d) % p, from: (g - d + p) % p });
  return rounds;
}

/**
 * Binomial tree over virtual ranks 0..p-1 rooted at 0 (MPICH's): v's parent
 * is v without its lowest set bit; its children are v + m for the powers of
 * two m below that bit (v + m < p), child v + m heading the subtree of virtual
 * ranks [v + m, v + m + size). Children are listed farthest first (the deepest
 * subtree), the order a broadcast sends in; a reduction receives in the reverse.
 */
export interface BinomialNode {
  parent: number;
  children: Array<{ child: number; size: number }>;
  /** Virtual ranks v .. v + size - 1 are v's subtree (v included). */
  size: number;
}

export function binomial(p: number, v: number): BinomialNode {
  let low = 1;
  while (low < p && (v & low) === 0) low *= 2;
  const parent = v === 0 ? -1 : v - low;
  const children: Array<{ child: number; size: number }> = [];
  for (let m = low / 2; m >= 1; m /= 2) {
    if (v + m < p) children.push({ child: v + m, size: Math.min(m, p - v - m) });
  }
  return { parent, children, size: Math.min(v === 0 ? p : low, p - v) };
}

/** A participant's virtual rank in a tree rooted at `root`, and back. */
export const toVirtual = (g: number, root: number, p: number): number => (g - root + p) % p;
export const fromVirtual = (v: number, root: number, p: number): number => (v + root) % p;

/**
 * Recursive doubling for any p (MPICH's fold for non-powers of two): the
 * participants q..p-1 (q = floorPow2(p)) hand their data to g - q first and
 * get the result from it last; participants 0..q-1 exchange with g ^ 1,
 * g ^ 2, ..., g ^ (q/2), each time combining their data with the partner's.
 */
export interface Doubling {
  q: number;
  /** For g >= q: the participant it hands its data to (and gets the result from); else -1. */
  helper: number;
  /** For g < p - q: the participant g + q whose data it folds in first; else -1. */
  extra: number;
  /** For g < q: the partner of each round. */
  partners: number[];
}

export function doubling(p: number, g: number): Doubling {
  const q = floorPow2(p);
  const partners: number[] = [];
  if (g < q) for (let d = 1; d < q; d *= 2) partners.push(g ^ d);
  return { q, helper: g >= q ? g - q : -1, extra: g + q < p ? g + q : -1, partners };
}

/**
 * Rabenseifner's reduce-scatter by recursive halving among q = 2^k
 * participants (q blocks of the vector), then allgather by recursive doubling
 * in the reverse order. Halving goes by ascending bits, so its first partner
 * is g ^ 1, as in recursive doubling (a member whose vector length differs
 * meets the same first partner whichever algorithm its length picked). In
 * each halving step, g keeps the half of its current block range on its side
 * of the bit, sends the other half (`give`) to the partner and folds the
 * partner's copy of `keep` into its own; after the last step it holds one
 * block, reduced. The allgather runs the steps backwards: send `keep`,
 * receive `give`.
 */
export interface HalvingStep {
  partner: number;
  /** Block ranges [lo, hi). */
  keep: [number, number];
  give: [number, number];
}

export function halving(q: number, g: number): HalvingStep[] {
  const steps: HalvingStep[] = [];
  let lo = 0;
  let hi = q;
  for (let d = 1; d < q; d *= 2) {
    const mid = (lo + hi) / 2;
    const low = (g & d) === 0;
    const keep: [number, number] = low ? [lo, mid] : [mid, hi];
    const give: [number, number] = low ? [mid, hi] : [lo, mid];
    steps.push({ partner: g ^ d, keep, give });
    [lo, hi] = keep;
  }
  return steps;
}

/** Element offset of block b when n elements split into q near-equal blocks. */
export function blockStart(n: number, q: number, b: number): number {
  return Math.floor((b * n) / q);
}

/**
 * Bruck's allgather for any p: before round k participant g holds the blocks
 * of g, g + 1, ..., g + 2^k - 1 (mod p), in that order; it sends the first
 * `count` of them to g - 2^k and appends the `count` it receives from g + 2^k.
 * After ceil(log2 p) rounds it holds all p, starting with its own.
 */
export function bruck(p: number, g: number): Array<{ to: number; from: number; count: number }> {
  const rounds: Array<{ to: number; from: number; count: number }> = [];
  for (let d = 1; d < p; d *= 2) rounds.push({ to: (g - d + p) % p, from: (g + d) % p, count: Math.min(d, p - d) });
  return rounds;
}

/**
 * Recursive-doubling inclusive scan (MPICH's, any p): in the round of bit m,
 * rank r exchanges its partial (the fold of a window of ranks) with r ^ m when
 * that is a rank; a partial from below is folded into both the partial and
 * the result, one from above into the partial only.
 */
export function scanPartners(p: number, r: number): number[] {
  const out: number[] = [];
  for (let m = 1; m < p; m *= 2) if ((r ^ m) < p) out.push(r ^ m);
  return out;
}
