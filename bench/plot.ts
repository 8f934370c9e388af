/**
 * A log-log line chart as a standalone SVG: figure against message size for
 * several series (mprun and its peer). No dependencies; the output opens in
 * any browser.
 */

export interface Series {
  name: string;
  color: string;
  points: Array<{ x: number; y: number }>;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function bytes(n: number): string {
  if (n >= 1 << 20) return `${n / (1 << 20)}M`;
  if (n >= 1 << 10) return `${n / (1 << 10)}K`;
  return String(n);
}

function num(n: number): string {
  return n >= 1000 ? `${+(n / 1000).toPrecision(3)}k` : String(+n.toPrecision(3));
}

/** Renders the series; sizes of 0 (and non-positive figures) are left out, as a log scale cannot show them. */
export function logLogChart(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 760;
  const H = o.height ?? 460;
  const m = { left: 72, right: 24, top: 44, bottom: 56 };
  const pts = series.flatMap((s) => s.points).filter((p) => p.x > 0 && p.y > 0);
  if (pts.length === 0) throw new RangeError('nothing to plot: no positive sizes and figures');
  const lx = (v: number): number => Math.log2(v);
  const ly = (v: number): number => Math.log10(v);
  const x0 = Math.floor(lx(Math.min(...pts.map((p) => p.x))));
  const x1 = Math.ceil(lx(Math.max(...pts.map((p) => p.x))));
  const y0 = Math.floor(ly(Math.min(...pts.map((p) => p.y))));
  const y1 = Math.ceil(ly(Math.max(...pts.map((p) => p.y))));
  const sx = (v: number): number => m.left + ((lx(v) - x0) / Math.max(1, x1 - x0)) * (W - m.left - m.right);
  const sy = (v: number): number => H - m.bottom - ((ly(v) - y0) / Math.max(1, y1 - y0)) * (H - m.top - m.bottom);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(o.title)}</text>`);
  // grid and ticks
  const xStep = Math.max(1, Math.ceil((x1 - x0) / 12));
  for (let e = Math.ceil(x0 / xStep) * xStep; e <= x1; e += xStep) {
    const x = sx(2 ** e);
    out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${H - m.bottom}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x}" y="${H - m.bottom + 16}" text-anchor="middle">${bytes(2 ** e)}</text>`);
  }
  for (let e = y0; e <= y1; e++) {
    const y = sy(10 ** e);
    out.push(`<line x1="${m.left}" y1="${y}" x2="${W - m.right}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 6}" y="${y + 4}" text-anchor="end">${num(10 ** e)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${W - m.left - m.right}" height="${H - m.top - m.bottom}" fill="none" stroke="#999"/>`);
  out.push(`<text x="${W / 2}" y="${H - 14}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${H / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  // series
  series.forEach((s, i) => {
    const p = s.points.filter((q) => q.x > 0 && q.y > 0).sort((a, b) => a.x - b.x);
    if (p.length > 0) {
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${p.map((q) => `${sx(q.x).toFixed(1)},${sy(q.y).toFixed(1)}`).join(' ')}"/>`);
      for (const q of p) out.push(`<circle cx="${sx(q.x).toFixed(1)}" cy="${sy(q.y).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(s.name)}: ${bytes(q.x)} ${num(q.y)}</title></circle>`);
    }
    const ly0 = m.top + 14 + 18 * i;
    out.push(`<line x1="${m.left + 12}" y1="${ly0}" x2="${m.left + 36}" y2="${ly0}" stroke="${s.color}" stroke-width="2"/>`);
    out.push(`<text x="${m.left + 42}" y="${ly0 + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
