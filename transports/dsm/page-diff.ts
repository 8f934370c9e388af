/**
 * Diffs and merges of shared-variable pages (TreadMarks' twins and diffs, at
 * element granularity): release() sends the elements of a page that differ
 * from its twin; acquire() merges a home's copy of a page into this node's,
 * taking every element the home changed unless this node changed it too.
 * Elements are compared as whole elements (8-byte ones as two 32-bit words),
 * never as floats, so NaNs and -0 count as changes like any other bits.
 */
import { homeOf, PAGE_BYTES, type VarMemory } from './layout.js';
import type { WriteRun } from './page-wire.js';

export type WordArrayConstructor = Uint32ArrayConstructor | Uint16ArrayConstructor | Uint8ArrayConstructor;

/**
 * Elements of `unit` bytes compared as words: the word type, its size, and
 * words per element (8-byte elements are two 32-bit words).
 */
export function elementWords(unit: number): { W: WordArrayConstructor; word: number; per: number } {
  if (unit !== 1 && unit !== 2 && unit !== 4 && unit !== 8) throw new RangeError(`elements of ${unit} bytes cannot be diffed`);
  const word = Math.min(unit, 4);
  return { W: word === 4 ? Uint32Array : word === 2 ? Uint16Array : Uint8Array, word, per: unit / word };
}

/**
 * Runs of elements that differ between `a` and `b` (same length, a whole
 * number of elements of `unit` bytes, each view aligned to its word), as
 * [start, end) byte ranges in ascending order.
 */
export function diffRuns(a: Uint8Array, b: Uint8Array, unit: number): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  const { W, word, per } = elementWords(unit);
  const x = new W(a.buffer as ArrayBuffer, a.byteOffset, a.byteLength / word);
  const y = new W(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength / word);
  let start = -1;
  for (let i = 0; i < x.length; i += per) {
    let differs = x[i] !== y[i];
    if (per === 2 && !differs) differs = x[i + 1] !== y[i + 1];
    if (differs) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      runs.push([start * word, i * word]);
      start = -1;
    }
  }
  if (start >= 0) runs.push([start * word, x.length * word]);
  return runs;
}

/**
 * Merges `home` (the home's copy of a page) into `data` (this node's copy)
 * and `twin` (this node's copy as of its last synchronisation), all of one
 * page's length: each element where home differs from the twin changed at
 * the home; it replaces this node's element unless this node changed that
 * element too (data differs from twin: its unreleased write wins, as it will
 * be released), and the twin takes it either way, so the next release sends
 * only this node's own changes. `data` and `twin` must be aligned to the
 * word; `home` need not be.
 */
export function mergePage(data: Uint8Array, twin: Uint8Array, home: Uint8Array, unit: number): void {
  const copy = new Uint8Array(home); // its own aligned buffer, for word views
  const { W, word, per } = elementWords(unit);
  const n = copy.byteLength / word;
  const h = new W(copy.buffer as ArrayBuffer, 0, n);
  const d = new W(data.buffer as ArrayBuffer, data.byteOffset, n);
  const t = new W(twin.buffer as ArrayBuffer, twin.byteOffset, n);
  for (let i = 0; i < n; i += per) {
    let changed = h[i] !== t[i];
    if (per === 2 && !changed) changed = h[i + 1] !== t[i + 1];
    if (!changed) continue;
    let untouched = d[i] === t[i];
    if (per === 2 && untouched) untouched = d[i + 1] === t[i + 1];
    for (let k = 0; k < per; k++) {
      if (untouched) d[i + k] = h[i + k]!;
      t[i + k] = h[i + k]!;
    }
  }
}

/**
 * What a release of node `nodeIndex` publishes: for each page of `m` that
 * differs from its twin, the runs of changed elements (`unit` bytes), grouped
 * by the page's home node (offsets in the variable); a page homed here gets its
 * version bumped instead. Each such page's twin becomes a snapshot of it, so
 * stores that land meanwhile are caught by the next release.
 */
export function releaseRuns(m: VarMemory, nodeIndex: number, nnodes: number, unit: number): Map<number, WriteRun[]> {
  const byHome = new Map<number, WriteRun[]>();
  for (let p = 0; p < m.layout.pages; p++) {
    const lo = p * PAGE_BYTES;
    const page = m.data.subarray(lo, lo + PAGE_BYTES);
    const twin = m.twin.subarray(lo, lo + PAGE_BYTES);
    if (Buffer.compare(page, twin) === 0) continue;
    const snap = page.slice();
    const home = homeOf(p, nnodes);
    if (home !== nodeIndex) {
      let runs = byHome.get(home);
      if (runs === undefined) byHome.set(home, (runs = []));
      for (const [a, z] of diffRuns(snap, twin, unit)) runs.push([lo + a, snap.subarray(a, z)]);
    } else m.bump(p);
    twin.set(snap);
  }
  return byHome;
}
