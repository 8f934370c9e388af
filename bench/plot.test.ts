import { describe, expect, it } from 'vitest';
import { logLogChart } from './plot.js';
import { formatComparison, type Comparison } from './compare.js';

describe('benchmark plots and tables', () => {
  it('draws both series on log-log axes, leaving out size 0', () => {
    const svg = logLogChart(
      [
        { name: 'mprun', color: '#d62728', points: [{ x: 0, y: 1 }, { x: 8, y: 0.5 }, { x: 1024, y: 2 }, { x: 1 << 20, y: 150 }] },
        { name: 'Open MPI', color: '#1f77b4', points: [{ x: 8, y: 0.2 }, { x: 1 << 20, y: 100 }] },
      ],
      { title: 'latency <test>', xLabel: 'bytes', yLabel: 'us' },
    );
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg.match(/<circle/g)).toHaveLength(5);
    expect(svg).toContain('latency &lt;test&gt;');
    expect(svg).toContain('>1M<');
    expect(() => logLogChart([{ name: 'x', color: 'red', points: [{ x: 0, y: 1 }] }], { title: '', xLabel: '', yLabel: '' })).toThrow(RangeError);
  });

  it('prints both figures and the ratio per size', () => {
    const c: Comparison = { name: 'allreduce', against: 'allreduce', ranks: 8, rounds: 3, unit: 'us', rows: [{ size: 8, mprun: 10, peer: 20, ratio: 0.5 }] };
    const text = formatComparison(c);
    expect(text).toContain('mprun allreduce vs Open MPI allreduce, 8 ranks, medians of 3');
    expect(text).toMatch(/^8\s+10\.00\s+20\.00\s+0\.50$/m);
  });
});
