import { describe, expect, it } from 'vitest';
import { decodeLayout, encodeLayout, layoutOf } from './layout.js';

describe('MPRUN_LAYOUT', () => {
  it('writes a node by slot as one run and round-robin as one strided run', () => {
    expect(encodeLayout([[0, 1, 2, 3], [4, 5, 6, 7]])).toBe('0-3;4-7');
    expect(encodeLayout([[0, 2, 4, 6], [1, 3, 5, 7]])).toBe('0-6/2;1-7/2');
    expect(encodeLayout([[0], [1, 2, 9]])).toBe('0;1-2,9');
  });

  it('reads back every placement it writes', () => {
    for (const nodes of [[[0, 1, 2, 3], [4, 5, 6, 7]], [[0, 2, 4, 6], [1, 3, 5, 7]], [[0, 3, 4, 5, 9], [1, 2, 6, 7, 8]], [[0]]]) {
      const size = nodes.flat().length;
      const l = decodeLayout(encodeLayout(nodes), size);
      if (l instanceof Error) throw l;
      expect(l.ranksOf).toEqual(nodes);
      nodes.forEach((rs, n) => rs.forEach((r) => expect(l.nodeOf[r]).toBe(n)));
    }
  });

  it('stays O(nodes) for 1,000 nodes x 64 ranks either way', () => {
    const N = 1000;
    const bySlot = Array.from({ length: N }, (_, n) => Array.from({ length: 64 }, (_, i) => n * 64 + i));
    const robin = Array.from({ length: N }, (_, n) => Array.from({ length: 64 }, (_, i) => n + i * N));
    expect(encodeLayout(bySlot).length).toBeLessThan(12 * N);
    expect(encodeLayout(robin).length).toBeLessThan(20 * N);
  });

  it('names what is wrong', () => {
    expect(String(decodeLayout('0-3;3-4', 5))).toMatch(/rank 3 is on nodes 0 and 1/);
    expect(String(decodeLayout('0-2', 4))).toMatch(/rank 3 is on no node/);
    expect(String(decodeLayout('0-9', 4))).toMatch(/not below/);
    expect(String(decodeLayout('x', 1))).toMatch(/cannot read 'x'/);
  });

  it('groups ranks by host name in the order of their first rank', () => {
    const l = layoutOf(['b', 'a', 'b', 'a']);
    expect(l.names).toEqual(['b', 'a']);
    expect(l.ranksOf).toEqual([[0, 2], [1, 3]]);
    expect(Array.from(l.nodeOf)).toEqual([0, 1, 0, 1]);
  });
});
