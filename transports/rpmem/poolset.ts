/**
 * PMDK pool set files (poolset(5)), as the rpmem target daemon reads them:
 *
 *   PMEMPOOLSET
 *   OPTION SINGLEHDR            # or NOHDRS; default: a 4 KiB header in every part
 *   16M /pools/job.part0        # size and path; relative paths are taken from the set's directory
 *   1G  /pools/job.part1
 *
 * The pool's address space is its header (the first 4096 bytes, unless NOHDRS)
 * followed by the data area of every part in order; a part's own header (when
 * every part has one) is not in it. So usable bytes = sum of parts - 4096 per
 * header, as poolset(5) says. A target set cannot name replicas ("Remote
 * replica cannot have replicas").
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { rpmemError } from '../../core/errors.js';

export const POOL_HDR_SIZE = 4096;
/** librpmem's RPMEM_MIN_PART and RPMEM_MIN_POOL. */
export const MIN_PART = 2 * 1024 * 1024;
export const MIN_POOL = 8 * 1024;

export type HeaderOption = 'all' | 'single' | 'none';

export interface PoolPart {
  path: string;
  size: number;
}

export interface PoolSet {
  parts: PoolPart[];
  headers: HeaderOption;
}

/** A run of the pool's address space that lives in one part. */
export interface Extent {
  poolOffset: number;
  part: number;
  partOffset: number;
  length: number;
}

const UNITS: Record<string, number> = {
  '': 1,
  K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40,
  KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40,
  KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12,
};

export function parseSize(text: string): number | null {
  const m = /^(\d+)([KMGT](?:I?B)?)?$/i.exec(text);
  if (m === null) return null;
  const unit = UNITS[(m[2] ?? '').toUpperCase()];
  return unit === undefined ? null : Number(m[1]) * unit;
}

/** Parses the text of a set file at `file`; bad sets raise EINVAL with the line. */
export function parsePoolSet(text: string, file: string): PoolSet {
  const lines = text.split('\n').map((l) => l.replace(/#.*$/, '').trim());
  const bad = (n: number, why: string): never => {
    throw rpmemError('EINVAL', `${file}:${n + 1}: ${why}`);
  };
  let n = lines.findIndex((l) => l !== '');
  if (n < 0 || lines[n] !== 'PMEMPOOLSET') bad(Math.max(n, 0), 'a pool set file starts with PMEMPOOLSET');
  const set: PoolSet = { parts: [], headers: 'all' };
  let option: string | null = null;
  for (n++; n < lines.length; n++) {
    const line = lines[n]!;
    if (line === '') continue;
    const words = line.split(/\s+/);
    if (words[0] === 'OPTION') {
      const o = words[1]?.toUpperCase();
      if (o !== 'SINGLEHDR' && o !== 'NOHDRS') bad(n, `unknown option ${words[1] ?? ''}`);
      if (option !== null && option !== o) bad(n, 'SINGLEHDR and NOHDRS are mutually exclusive');
      option = o!;
      set.headers = o === 'SINGLEHDR' ? 'single' : 'none';
      continue;
    }
    if (words[0] === 'REPLICA') bad(n, 'a remote pool set cannot have replicas');
    if (words.length !== 2) bad(n, 'expected "<size> <path>"');
    const size = parseSize(words[0]!);
    if (size === null) bad(n, `bad size ${words[0]}`);
    if (size! < MIN_PART) bad(n, `part of ${size} bytes is smaller than the minimum part (${MIN_PART} bytes)`);
    if (size! % POOL_HDR_SIZE !== 0) bad(n, `part size ${size} is not a multiple of ${POOL_HDR_SIZE}`);
    const path = isAbsolute(words[1]!) ? words[1]! : resolve(dirname(file), words[1]!);
    set.parts.push({ path, size: size! });
  }
  if (set.parts.length === 0) bad(lines.length - 1, 'the pool set has no parts');
  return set;
}

/** The text of a set file with `parts` (written for pools the checkpoint store makes). */
export function formatPoolSet(set: PoolSet): string {
  const option = set.headers === 'single' ? 'OPTION SINGLEHDR\n' : set.headers === 'none' ? 'OPTION NOHDRS\n' : '';
  return `PMEMPOOLSET\n${option}${set.parts.map((p) => `${p.size} ${p.path}`).join('\n')}\n`;
}

/** Whether part `i` starts with a header. */
export function partHasHeader(set: PoolSet, i: number): boolean {
  return set.headers === 'all' || (set.headers === 'single' && i === 0);
}

/** How the pool's address space maps onto the parts. */
export function extentsOf(set: PoolSet): Extent[] {
  const out: Extent[] = [];
  let at = 0;
  set.parts.forEach((p, i) => {
    const skip = partHasHeader(set, i) && i > 0 ? POOL_HDR_SIZE : 0;
    out.push({ poolOffset: at, part: i, partOffset: skip, length: p.size - skip });
    at += p.size - skip;
  });
  return out;
}

/** Size of the pool's address space (its header included, when it has one). */
export function capacityOf(set: PoolSet): number {
  return extentsOf(set).reduce((s, e) => s + e.length, 0);
}

/** The pieces of [offset, offset+length) of the pool, part by part. */
export function splitRange(extents: Extent[], offset: number, length: number): Extent[] {
  const out: Extent[] = [];
  const end = offset + length;
  for (const e of extents) {
    const s = Math.max(offset, e.poolOffset);
    const t = Math.min(end, e.poolOffset + e.length);
    if (s < t) out.push({ poolOffset: s, part: e.part, partOffset: e.partOffset + (s - e.poolOffset), length: t - s });
  }
  return out;
}
