/**
 * Which node each rank runs on, as mprun tells every rank in MPRUN_LAYOUT
 * (issue 12.4): the wire-up then needs no other rank's business card to know
 * who is local and which node a peer is on. Each node's ranks are written as
 * strided runs (start, count, stride): by slot a node is one run, round-robin
 * one run of stride N, so the text is O(nodes), not O(ranks).
 *
 *   0-3;4-7          two nodes by slot (ranks 0..3 and 4..7)
 *   0-6/2;1-7/2      two nodes round-robin (stride 2)
 */

export interface JobLayout {
  /** The node index of every rank. */
  readonly nodeOf: Int32Array;
  /** Each node's ranks, ascending (a rank's local rank is its index here). */
  readonly ranksOf: readonly (readonly number[])[];
}

/** A node's ranks (ascending) as strided runs: start-last/stride, stride 1 omitted, one rank as its number. */
function runs(ranks: readonly number[]): string {
  const out: string[] = [];
  let i = 0;
  while (i < ranks.length) {
    const start = ranks[i]!;
    if (i + 1 >= ranks.length) {
      out.push(String(start));
      break;
    }
    const stride = ranks[i + 1]! - start;
    let j = i + 1;
    while (j + 1 < ranks.length && ranks[j + 1]! - ranks[j]! === stride) j++;
    const last = ranks[j]!;
    out.push(stride === 1 ? `${start}-${last}` : `${start}-${last}/${stride}`);
    i = j + 1;
  }
  return out.join(',');
}

/** MPRUN_LAYOUT for nodes given their ranks (each list ascending). */
export function encodeLayout(nodes: readonly (readonly number[])[]): string {
  return nodes.map((r) => runs([...r].sort((a, b) => a - b))).join(';');
}

/** The layout of a job of `size` ranks, or an Error naming what is wrong (every rank on exactly one node). */
export function decodeLayout(text: string, size: number): JobLayout | Error {
  const nodeOf = new Int32Array(size).fill(-1);
  const ranksOf: number[][] = [];
  const parts = text.split(';');
  for (let n = 0; n < parts.length; n++) {
    const mine: number[] = [];
    for (const run of parts[n]!.split(',')) {
      const m = /^(\d+)(?:-(\d+)(?:\/(\d+))?)?$/.exec(run.trim());
      if (m === null) return new Error(`cannot read '${run}' of node ${n}`);
      const start = Number(m[1]);
      const last = m[2] === undefined ? start : Number(m[2]);
      const stride = m[3] === undefined ? 1 : Number(m[3]);
      if (stride < 1 || last < start || (last - start) % stride !== 0) return new Error(`'${run}' of node ${n} is not a run`);
      for (let r = start; r <= last; r += stride) {
        if (r >= size) return new Error(`rank ${r} of node ${n} is not below the job's size ${size}`);
        if (nodeOf[r] !== -1) return new Error(`rank ${r} is on nodes ${nodeOf[r]} and ${n}`);
        nodeOf[r] = n;
        mine.push(r);
      }
    }
    ranksOf.push(mine.sort((a, b) => a - b));
  }
  const missing = nodeOf.indexOf(-1);
  if (missing >= 0) return new Error(`rank ${missing} is on no node`);
  return { nodeOf, ranksOf };
}

/** Layout from each rank's node key (a host name), nodes numbered in the order of their first rank. */
export function layoutOf(keys: readonly string[]): JobLayout & { names: string[] } {
  const index = new Map<string, number>();
  const nodeOf = new Int32Array(keys.length);
  const ranksOf: number[][] = [];
  keys.forEach((k, r) => {
    let n = index.get(k);
    if (n === undefined) {
      index.set(k, (n = ranksOf.length));
      ranksOf.push([]);
    }
    nodeOf[r] = n;
    ranksOf[n]!.push(r);
  });
  return { nodeOf, ranksOf, names: [...index.keys()] };
}
