/**
 * The collective schedules for p = 1..17: who sends to whom in each round,
 * that every send has its matching receive in the same round, that rounds are
 * O(log p), and, simulating each schedule on contribution counts, that every
 * participant ends with every contribution exactly once.
 */
import { describe, expect, it } from 'vitest';
import { binomial, blockStart, bruck, ceilLog2, dissemination, doubling, floorPow2, fromVirtual, halving, scanPartners, toVirtual } from './schedules.js';

const PS = Array.from({ length: 17 }, (_, i) => i + 1);
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
/** Contribution counts: counts[j] = how many times contribution j is folded in. */
type Counts = number[];
const unit = (p: number, j: number): Counts => range(p).map((i) => (i === j ? 1 : 0));
const add = (a: Counts, b: Counts): Counts => a.map((x, i) => x + b[i]!);

describe('collective schedules', () => {
  it('dissemination: ceil(lg p) rounds; round k pairs g -> g + 2^k with its receive; everyone hears from everyone', () => {
    for (const p of PS) {
      const all = range(p).map((g) => dissemination(p, g));
      for (const rounds of all) expect(rounds.length).toBe(ceilLog2(p));
      let know = range(p).map((g) => new Set([g]));
      for (let k = 0; k < ceilLog2(p); k++) {
        for (let g = 0; g < p; g++) {
          const { to, from } = all[g]![k]!;
          expect(all[to]![k]!.from).toBe(g);
          expect(all[from]![k]!.to).toBe(g);
          expect(to).not.toBe(g);
        }
        know = know.map((s, g) => new Set([...s, ...know[all[g]![k]!.from]!]));
      }
      for (const s of know) expect(s.size).toBe(p);
    }
  });

  it('binomial: every virtual rank but 0 has one parent listing it as a child; subtrees partition 0..p-1; depth ceil(lg p)', () => {
    for (const p of PS) {
      const nodes = range(p).map((v) => binomial(p, v));
      expect(nodes[0]!.parent).toBe(-1);
      expect(nodes[0]!.size).toBe(p);
      for (let v = 1; v < p; v++) {
        const par = nodes[v]!.parent;
        expect(par).toBeGreaterThanOrEqual(0);
        expect(par).toBeLessThan(v);
        expect(nodes[par]!.children.filter((c) => c.child === v)).toEqual([{ child: v, size: nodes[v]!.size }]);
      }
      for (let v = 0; v < p; v++) {
        const n = nodes[v]!;
        // The subtree is v followed by its children's subtrees, contiguous.
        let next = v + 1;
        for (const c of [...n.children].reverse()) {
          expect(c.child).toBe(next);
          next += c.size;
        }
        expect(next).toBe(v + n.size);
        // Farthest child (the deepest subtree) first: a broadcast's send order.
        for (let i = 1; i < n.children.length; i++) expect(n.children[i]!.child).toBeLessThan(n.children[i - 1]!.child);
      }
      const depth = (v: number): number => (v === 0 ? 0 : 1 + depth(nodes[v]!.parent));
      expect(Math.max(...range(p).map(depth))).toBeLessThanOrEqual(ceilLog2(p));
      // Rooted anywhere: a gather up the tree brings every contribution to the root exactly once.
      for (let root = 0; root < p; root++) {
        const at = range(p).map((g) => unit(p, g));
        // Deepest first: a child sends its subtree to its parent after hearing from its own children.
        const order = range(p).sort((a, b) => depth(toVirtual(b, root, p)) - depth(toVirtual(a, root, p)));
        for (const g of order) {
          const v = toVirtual(g, root, p);
          if (v !== 0) {
            const parent = fromVirtual(nodes[v]!.parent, root, p);
            at[parent] = add(at[parent]!, at[g]!);
          }
        }
        expect(at[root]).toEqual(range(p).map(() => 1));
      }
    }
  });

  it('recursive doubling: extras hand over and get back; partners pair up in each round; every contribution exactly once everywhere', () => {
    for (const p of PS) {
      const q = floorPow2(p);
      const plans = range(p).map((g) => doubling(p, g));
      let acc = range(p).map((g) => unit(p, g));
      for (let g = q; g < p; g++) {
        expect(plans[g]!.helper).toBe(g - q);
        expect(plans[g - q]!.extra).toBe(g);
        expect(plans[g]!.partners).toEqual([]);
        acc[g - q] = add(acc[g - q]!, acc[g]!);
      }
      for (let k = 0; k < Math.log2(q); k++) {
        for (let g = 0; g < q; g++) expect(plans[plans[g]!.partners[k]!]!.partners[k]).toBe(g);
        acc = acc.map((a, g) => (g < q ? add(a, acc[plans[g]!.partners[k]!]!) : a));
      }
      for (let g = q; g < p; g++) acc[g] = acc[g - q]!;
      for (const a of acc) expect(a).toEqual(range(p).map(() => 1));
      for (let g = 0; g < q; g++) expect(plans[g]!.partners.length).toBe(Math.log2(q));
    }
  });

  it('halving + doubling (Rabenseifner): first partner g ^ 1; keep and give split the range; each block reduced once, then everywhere', () => {
    for (const q of [1, 2, 4, 8, 16]) {
      const steps = range(q).map((g) => halving(q, g));
      if (q > 1) for (let g = 0; g < q; g++) expect(steps[g]![0]!.partner).toBe(g ^ 1);
      // blocks[g][b]: the contribution counts of block b at participant g.
      let blocks = range(q).map((g) => range(q).map(() => unit(q, g)));
      for (let k = 0; k < Math.log2(q); k++) {
        const next = blocks.map((bs) => bs.map((c) => [...c]));
        for (let g = 0; g < q; g++) {
          const s = steps[g]![k]!;
          const t = steps[s.partner]![k]!;
          expect(t.partner).toBe(g);
          expect(t.give).toEqual(s.keep);
          expect(t.keep).toEqual(s.give);
          for (let b = s.keep[0]; b < s.keep[1]; b++) next[g]![b] = add(blocks[g]![b]!, blocks[s.partner]![b]!);
        }
        blocks = next;
      }
      // After halving, participant g holds one fully reduced block, and the blocks owned are all distinct.
      const owned = range(q).map((g) => {
        const last = steps[g]!.length === 0 ? ([0, 1] as [number, number]) : steps[g]![steps[g]!.length - 1]!.keep;
        expect(last[1] - last[0]).toBe(1);
        expect(blocks[g]![last[0]]).toEqual(range(q).map(() => 1));
        return last[0];
      });
      expect(new Set(owned).size).toBe(q);
      for (let k = Math.log2(q) - 1; k >= 0; k--) {
        const next = blocks.map((bs) => bs.map((c) => [...c]));
        for (let g = 0; g < q; g++) {
          const s = steps[g]![k]!;
          for (let b = s.give[0]; b < s.give[1]; b++) next[g]![b] = blocks[s.partner]![b]!;
        }
        blocks = next;
      }
      for (const bs of blocks) for (const c of bs) expect(c).toEqual(range(q).map(() => 1));
    }
    // Blocks of n elements among q cover 0..n exactly, even with fewer elements than blocks.
    for (const [n, q] of [[10, 4], [3, 8], [0, 2], [300_001, 16]] as const) {
      expect(blockStart(n, q, 0)).toBe(0);
      expect(blockStart(n, q, q)).toBe(n);
      for (let b = 0; b < q; b++) expect(blockStart(n, q, b + 1)).toBeGreaterThanOrEqual(blockStart(n, q, b));
    }
  });

  it("Bruck's allgather: sends match receives; every participant gets every block exactly once", () => {
    for (const p of PS) {
      const plans = range(p).map((g) => bruck(p, g));
      let held = range(p).map((g) => [g]);
      for (let k = 0; k < ceilLog2(p); k++) {
        for (let g = 0; g < p; g++) {
          const r = plans[g]![k]!;
          expect(plans[r.to]![k]!.from).toBe(g);
          expect(plans[r.to]![k]!.count).toBe(r.count);
        }
        held = held.map((h, g) => {
          const r = plans[g]![k]!;
          const got = held[r.from]!.slice(0, r.count);
          return [...h, ...got];
        });
      }
      for (let g = 0; g < p; g++) {
        expect(held[g]!.length).toBe(p);
        expect([...held[g]!].sort((a, b) => a - b)).toEqual(range(p));
        expect(held[g]![0]).toBe(g);
      }
    }
  });

  it('recursive-doubling scan: partners pair up; rank r ends with contributions 0..r exactly once', () => {
    for (const p of PS) {
      const partners = range(p).map((r) => scanPartners(p, r));
      let partial = range(p).map((r) => unit(p, r));
      let result = range(p).map((r) => unit(p, r));
      for (let m = 1, k = 0; m < p; m *= 2, k++) {
        const nextPartial = partial.map((c) => [...c]);
        for (let r = 0; r < p; r++) {
          const o = r ^ m;
          if (o >= p) continue;
          expect(partners[r]).toContain(o);
          if (o < r) result[r] = add(result[r]!, partial[o]!);
          nextPartial[r] = add(partial[r]!, partial[o]!);
        }
        partial = nextPartial;
      }
      for (let r = 0; r < p; r++) expect(result[r]).toEqual(range(p).map((j) => (j <= r ? 1 : 0)));
      for (let r = 0; r < p; r++) expect(partners[r]!.length).toBeLessThanOrEqual(ceilLog2(p));
    }
  });
});
