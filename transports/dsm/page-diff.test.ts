/**
 * Diffs and merges of shared-variable pages in process: element-granular
 * diffs against the twin, several nodes' diffs merged at the homes and at
 * acquire, for floats, integers and bigints, and holes published by range.
 * Each simulated node is a VarMemory over a plain buffer; release and acquire
 * move diffs and pages through the same wire payloads the agents read.
 */
import { describe, expect, it } from 'vitest';
import { ProtocolError, RequestRefused } from './frames.js';
import { homeOf, PAGE_BYTES, VarMemory, varLayout } from './layout.js';
import { diffRuns, elementWords, mergePage, releaseRuns } from './page-diff.js';
import { applyWrites, changedPages } from './page-homes.js';
import { encodeFetch, packRuns, parseFetch, parsePages, parseRuns, pagesPayloadBytes, writePages, type WriteRun } from './page-wire.js';

type Ctor = Float64ArrayConstructor | Float32ArrayConstructor | Int32ArrayConstructor | Int16ArrayConstructor | Uint8ArrayConstructor | BigInt64ArrayConstructor;

function memory(bytes: number): VarMemory {
  return new VarMemory(new ArrayBuffer(varLayout(bytes).total), bytes);
}

/** A simulated job: one VarMemory per node; node n's copy of a page homed on n is the home's. */
class Job {
  readonly nodes: VarMemory[];
  constructor(
    readonly nnodes: number,
    readonly bytes: number,
    readonly unit: number,
  ) {
    this.nodes = Array.from({ length: nnodes }, () => memory(bytes));
  }

  view<T>(n: number, Type: { new (b: ArrayBuffer, o: number, l: number): T }): T {
    const d = this.nodes[n]!.data;
    return new Type(d.buffer as ArrayBuffer, d.byteOffset, this.bytes / this.unit);
  }

  /** SharedVariable.release's diffs (releaseRuns), each home's runs as VAR_WRITE payloads applied at that home. */
  release(n: number): void {
    for (const [home, runs] of releaseRuns(this.nodes[n]!, n, this.nnodes, this.unit)) for (const payload of packRuns(runs, 1 << 20)) this.#write(home, payload);
  }

  #write(home: number, payload: Uint8Array): void {
    applyWrites(this.nodes[home]!, parseRuns(payload), { nodeIndex: home, nnodes: this.nnodes });
  }

  /** What SharedVariable.acquire does: from each other home, the pages whose version moved, merged. */
  acquire(n: number): void {
    const m = this.nodes[n]!;
    for (let home = 0; home < this.nnodes; home++) {
      if (home === n) continue;
      const asked: Array<[number, number]> = [];
      for (let p = home; p < m.layout.pages; p += this.nnodes) asked.push([p, Atomics.load(m.versions, p)]);
      const copies = changedPages(this.nodes[home]!, parseFetch(encodeFetch(asked)), { nodeIndex: home, nnodes: this.nnodes });
      const wire = Buffer.alloc(pagesPayloadBytes(copies.length));
      writePages(wire, 0, copies);
      for (const { page, version, bytes } of parsePages(wire)) {
        const lo = page * PAGE_BYTES;
        mergePage(m.data.subarray(lo, lo + PAGE_BYTES), m.twin.subarray(lo, lo + PAGE_BYTES), bytes, this.unit);
        Atomics.store(m.versions, page, version);
      }
    }
  }

  /** What Hole.fill does: the range into data and twin, then each page's part to its home (the home's own pages bumped). */
  fillHole(n: number, byteStart: number, bytes: Uint8Array): void {
    const m = this.nodes[n]!;
    m.data.set(bytes, byteStart);
    m.twin.set(bytes, byteStart);
    const hi = byteStart + bytes.byteLength;
    const byHome = new Map<number, WriteRun[]>();
    for (let p = Math.floor(byteStart / PAGE_BYTES); p * PAGE_BYTES < hi; p++) {
      const a = Math.max(byteStart, p * PAGE_BYTES);
      const z = Math.min(hi, (p + 1) * PAGE_BYTES);
      const home = homeOf(p, this.nnodes);
      if (home === n) {
        m.bump(p);
        continue;
      }
      if (!byHome.has(home)) byHome.set(home, []);
      byHome.get(home)!.push([a, bytes.subarray(a - byteStart, z - byteStart)]);
    }
    for (const [home, runs] of byHome) for (const payload of packRuns(runs, 1 << 20)) this.#write(home, payload);
  }
}

const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe('diffRuns: element-granular diffs against the twin', () => {
  it('finds runs of changed Float64 elements as whole elements', () => {
    const twin = new Float64Array(512);
    const page = twin.slice();
    page[3] = 1.5;
    page[4] = -2;
    page[10] = 7;
    page[511] = 1;
    expect(diffRuns(bytesOf(page), bytesOf(twin), 8)).toEqual([[24, 40], [80, 88], [4088, 4096]]);
  });

  it('counts bit changes a float comparison would miss or invent: -0, NaN payloads, one word of eight bytes', () => {
    const twin = Float64Array.of(0, NaN, 1, 5);
    const page = twin.slice();
    page[0] = -0; // == 0, but other bits
    new Uint32Array(page.buffer)[3] = 0x7ff80001; // another NaN
    expect(diffRuns(bytesOf(page), bytesOf(twin), 8)).toEqual([[0, 16]]);
    const same = twin.slice(); // NaN with the same bits: no change
    expect(diffRuns(bytesOf(same), bytesOf(twin), 8)).toEqual([]);
    const low = twin.slice();
    low[2] = 1 + 2 ** -52; // only the low word changes
    expect(diffRuns(bytesOf(low), bytesOf(twin), 8)).toEqual([[16, 24]]);
  });

  it('works for bigints (a change in the high word only), int32, int16 and bytes', () => {
    const bt = new BigInt64Array(8);
    const bp = bt.slice();
    bp[5] = 1n << 40n;
    expect(diffRuns(bytesOf(bp), bytesOf(bt), 8)).toEqual([[40, 48]]);
    const it32 = new Int32Array(8);
    const ip = it32.slice();
    ip[0] = -1;
    ip[1] = 2;
    ip[7] = 3;
    expect(diffRuns(bytesOf(ip), bytesOf(it32), 4)).toEqual([[0, 8], [28, 32]]);
    const st = new Int16Array(8);
    const sp = st.slice();
    sp[2] = 9;
    expect(diffRuns(bytesOf(sp), bytesOf(st), 2)).toEqual([[4, 6]]);
    const u = new Uint8Array(8);
    const up = u.slice();
    up[7] = 1;
    expect(diffRuns(up, u, 1)).toEqual([[7, 8]]);
  });

  it('refuses element sizes it cannot compare', () => {
    expect(() => elementWords(3)).toThrow(RangeError);
    expect(elementWords(8)).toMatchObject({ word: 4, per: 2 });
  });
});

describe('mergePage: the home\'s changes merged into this node\'s copy', () => {
  it('takes what the home changed, keeps what this node changed and has not released, and moves the twin', () => {
    const twin = new Float64Array(512);
    const data = twin.slice();
    const home = twin.slice();
    home[1] = 10; // changed at the home only: taken
    home[2] = 20; // changed at both: this node's unreleased write wins
    data[2] = 2;
    data[3] = 3; // changed here only: kept
    mergePage(bytesOf(data), bytesOf(twin), bytesOf(home), 8);
    expect([...data.subarray(0, 5)]).toEqual([0, 10, 2, 3, 0]);
    expect([...twin.subarray(0, 5)]).toEqual([0, 10, 20, 0, 0]);
    // The next release sends this node's own writes only.
    expect(diffRuns(bytesOf(data), bytesOf(twin), 8)).toEqual([[16, 32]]);
  });

  it('reads a home copy that is not aligned to its word', () => {
    const twin = new Int32Array(1024);
    const data = twin.slice();
    const wire = new Uint8Array(PAGE_BYTES + 1).subarray(1);
    new DataView(wire.buffer, wire.byteOffset).setInt32(8, -5, true);
    mergePage(bytesOf(data), bytesOf(twin), wire, 4);
    expect(data[2]).toBe(-5);
    expect(twin[2]).toBe(-5);
  });
});

const TYPES: Array<[string, Ctor, (i: number) => number | bigint]> = [
  ['Float64Array', Float64Array, (i) => i + 0.25],
  ['Float32Array', Float32Array, (i) => -i - 0.5],
  ['Int32Array', Int32Array, (i) => -i - 1],
  ['Int16Array', Int16Array, (i) => (i % 30000) + 1],
  ['Uint8Array', Uint8Array, (i) => (i % 250) + 1],
  ['BigInt64Array', BigInt64Array, (i) => BigInt(i + 1) << 33n],
];

describe('several nodes\' diffs, merged at the homes and at acquire', () => {
  for (const [name, Type, value] of TYPES) {
    it(`${name}: every node writes its own elements of shared pages; after release and acquire everyone sees all of them`, () => {
      const nnodes = 3;
      const length = (3 * PAGE_BYTES) / Type.BYTES_PER_ELEMENT + 5; // four pages, the last partial
      const job = new Job(nnodes, length * Type.BYTES_PER_ELEMENT, Type.BYTES_PER_ELEMENT);
      const views = job.nodes.map((_, n) => job.view(n, Type as unknown as { new (b: ArrayBuffer, o: number, l: number): Array<number | bigint> }));
      // Node n writes elements i with i % nnodes === n: interleaved in every page, homed everywhere.
      for (let n = 0; n < nnodes; n++) for (let i = n; i < length; i += nnodes) views[n]![i] = value(i);
      for (let n = 0; n < nnodes; n++) job.release(n);
      for (let n = 0; n < nnodes; n++) job.acquire(n);
      for (let n = 0; n < nnodes; n++) {
        const wrong = [];
        for (let i = 0; i < length; i++) if (views[n]![i] !== value(i)) wrong.push(i);
        expect(wrong, `node ${n}`).toEqual([]);
        // Nothing left to release: every twin caught up.
        expect(Buffer.compare(job.nodes[n]!.data, job.nodes[n]!.twin), `node ${n}'s twin`).toBe(0);
      }
    });
  }

  it('an acquire fetches only pages whose version moved, and keeps an unreleased write over the home\'s', () => {
    const job = new Job(2, 2 * PAGE_BYTES, 8);
    const v0 = job.view(0, Float64Array);
    const v1 = job.view(1, Float64Array);
    v1[1] = 5; // page 0, homed on node 0
    job.release(1);
    expect(changedPages(job.nodes[0]!, [[0, 0]], { nodeIndex: 0, nnodes: 2 })).toHaveLength(1);
    expect(changedPages(job.nodes[0]!, [[0, Atomics.load(job.nodes[0]!.versions, 0)]], { nodeIndex: 0, nnodes: 2 })).toEqual([]);
    expect(v0[1]).toBe(5); // the home's copy is node 0's
    v0[2] = 7; // the home writes and releases (a bump)
    job.release(0);
    v1[2] = 8; // node 1 writes the same element, unreleased
    job.acquire(1);
    expect(v1[2]).toBe(8);
    job.release(1);
    job.acquire(0);
    expect(v0[2]).toBe(8);
  });
});

describe('holes: a range published in one write per home', () => {
  it('fills a range over several pages and homes; other nodes see it after acquire', () => {
    const nnodes = 2;
    const length = (4 * PAGE_BYTES) / 8;
    const job = new Job(nnodes, length * 8, 8);
    const start = 100;
    const hole = Float64Array.from({ length: 1500 }, (_, i) => i * 2 + 1); // elements [100, 1600): pages 0..3
    job.fillHole(1, start * 8, bytesOf(hole));
    job.acquire(0);
    job.acquire(1);
    for (const n of [0, 1]) {
      const v = job.view(n, Float64Array);
      expect(v[start - 1]).toBe(0);
      expect([...v.subarray(start, start + hole.length)]).toEqual([...hole]);
      expect(v[start + hole.length]).toBe(0);
    }
  });

  it('a home refuses a write to a page homed elsewhere, or outside the variable, and applies none of it', () => {
    const m = memory(4 * PAGE_BYTES);
    const home = { nodeIndex: 0, nnodes: 2 };
    const ok: WriteRun = [8, new Uint8Array(8).fill(1)];
    expect(() => applyWrites(m, [ok, [PAGE_BYTES, new Uint8Array(8).fill(2)]], home)).toThrow(RequestRefused);
    expect(() => applyWrites(m, [ok, [PAGE_BYTES - 4, new Uint8Array(8)]], home)).toThrow(/page 1, which is not homed here/);
    expect(() => applyWrites(m, [ok, [4 * PAGE_BYTES - 4, new Uint8Array(8)]], home)).toThrow(/out of bounds/);
    expect(m.data.every((b) => b === 0)).toBe(true);
    expect(Atomics.load(m.versions, 0)).toBe(0);
    applyWrites(m, [ok, [2 * PAGE_BYTES, new Uint8Array(4).fill(3)]], home);
    expect([...m.data.subarray(8, 16)]).toEqual(Array(8).fill(1));
    expect([...m.twin.subarray(2 * PAGE_BYTES, 2 * PAGE_BYTES + 4)]).toEqual([3, 3, 3, 3]);
    expect([...m.versions]).toEqual([1, 0, 1, 0]);
    expect(() => changedPages(m, [[1, 0]], home)).toThrow(/VAR_FETCH of page 1, not homed here/);
  });
});

describe('the shared-variable payloads', () => {
  it('packs runs padded to 4 bytes, split at the payload limit, and reads them back', () => {
    const runs: WriteRun[] = [
      [0, Uint8Array.of(1, 2, 3)],
      [100, new Uint8Array(10).fill(7)],
      [4096, new Uint8Array(0)],
    ];
    const one = packRuns(runs, 1 << 20);
    expect(one).toHaveLength(1);
    expect(one[0]!.byteLength).toBe(8 + 4 + 8 + 12 + 8);
    expect(parseRuns(one[0]!).map(([o, b]) => [o, [...b]])).toEqual(runs.map(([o, b]) => [o, [...b]]));
    const split = packRuns(runs, 24);
    expect(split.map((b) => b.byteLength)).toEqual([12, 20, 8]);
    expect(split.flatMap((b) => parseRuns(b)).map(([o]) => o)).toEqual([0, 100, 4096]);
  });

  it('rejects truncated runs and partial fetch entries as malformed', () => {
    const b = packRuns([[0, new Uint8Array(8)]], 1 << 20)[0]!;
    expect(() => parseRuns(b.subarray(0, 12))).toThrow(ProtocolError);
    expect(() => parseRuns(b.subarray(0, 5))).toThrow(/truncated VAR_WRITE run/);
    expect(() => parseFetch(new Uint8Array(12))).toThrow(/partial entry/);
  });
});
