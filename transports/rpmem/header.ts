/**
 * librpmem's pool attributes (struct rpmem_pool_attr) and the 4 KiB pool
 * header they live in on the target (PMDK's struct pool_hdr), which ends with
 * a checksum of itself. Layout (little-endian):
 *
 *   +0   signature[8]      +8  major u32   +12 compat u32   +16 incompat u32   +20 ro_compat u32
 *   +24  poolset_uuid[16]  +40 uuid[16]    +56 next_uuid[16] +72 prev_uuid[16] +88 user_flags[16]
 *   +104 "MPRUNPH1"        +112 pool size (u64: the bytes create() asked for)
 *   +120 part index u32    +124 part count u32
 *   +4092 CRC32C of bytes [0, 4092)
 *
 * Every header has a backup: the same 4096 bytes in a file beside its part
 * (`<part>.hdr`, backupPathOf). One flipped byte in a header used to lose every
 * epoch of a job whose data and commit records were intact; now the daemon
 * opens the pool from whichever copy verifies and rewrites the other
 * (recoverHeader decides, the daemon does the I/O).
 *
 * Decision: a file of its own rather than a page of the part (the last 4 KiB,
 * as BTT keeps its info block backup, or a page after the header). A page of
 * the part takes 4 KiB of capacity from every header, which changes the
 * arithmetic of poolset(5) (usable = parts - 4096 per header) that existing set
 * files and callers rely on (a pool of exactly that size would become EFBIG),
 * and it changes the layout of pools already made, which then could never get
 * a backup. A file of its own keeps the layout as it was, lies in other blocks
 * than the part (damage to the part's first pages or a stray write into the
 * part cannot reach it), and pools made before it get their backup the first
 * time they open with a good header.
 */
import { rpmemError } from '../../core/errors.js';
import { crc32c } from './crc.js';
import { POOL_HDR_SIZE } from './poolset.js';

export interface PoolAttr {
  /** Up to 8 bytes (ASCII), like PMDK's pool signatures ("PMEMOBJ"). */
  signature: string;
  major: number;
  compatFeatures: number;
  incompatFeatures: number;
  roCompatFeatures: number;
  poolsetUuid: Uint8Array;
  uuid: Uint8Array;
  nextUuid: Uint8Array;
  prevUuid: Uint8Array;
  userFlags: Uint8Array;
}

export interface PoolHeader {
  attr: PoolAttr;
  poolSize: number;
  part: number;
  parts: number;
}

const MAGIC = 'MPRUNPH1';
const CRC_AT = POOL_HDR_SIZE - 4;
const BYTES16 = ['poolsetUuid', 'uuid', 'nextUuid', 'prevUuid', 'userFlags'] as const;

/** Attributes with every field zero (rpmem_pool_attr zeroed). */
export function emptyAttr(): PoolAttr {
  return {
    signature: '',
    major: 0,
    compatFeatures: 0,
    incompatFeatures: 0,
    roCompatFeatures: 0,
    poolsetUuid: new Uint8Array(16),
    uuid: new Uint8Array(16),
    nextUuid: new Uint8Array(16),
    prevUuid: new Uint8Array(16),
    userFlags: new Uint8Array(16),
  };
}

/** Checks attributes a caller gave (sizes of the byte fields, integer ranges). */
export function checkAttr(a: PoolAttr): void {
  if (Buffer.byteLength(a.signature, 'latin1') > 8) throw rpmemError('EINVAL', 'attr.signature is longer than 8 bytes');
  for (const k of ['major', 'compatFeatures', 'incompatFeatures', 'roCompatFeatures'] as const) {
    if (!Number.isInteger(a[k]) || a[k] < 0 || a[k] > 0xffffffff) throw rpmemError('EINVAL', `attr.${k} must be a 32-bit unsigned integer`);
  }
  for (const k of BYTES16) {
    if (!(a[k] instanceof Uint8Array) || a[k].byteLength !== 16) throw rpmemError('EINVAL', `attr.${k} must be 16 bytes`);
  }
}

/** The attributes as JSON-safe values (hex byte fields), for control messages. */
export function attrToWire(a: PoolAttr): Record<string, string | number> {
  const out: Record<string, string | number> = {
    signature: a.signature,
    major: a.major,
    compatFeatures: a.compatFeatures,
    incompatFeatures: a.incompatFeatures,
    roCompatFeatures: a.roCompatFeatures,
  };
  for (const k of BYTES16) out[k] = Buffer.from(a[k]).toString('hex');
  return out;
}

export function attrFromWire(w: unknown): PoolAttr {
  if (typeof w !== 'object' || w === null) throw rpmemError('EINVAL', 'attributes must be an object');
  const o = w as Record<string, unknown>;
  const num = (k: string): number => (typeof o[k] === 'number' ? (o[k] as number) : NaN);
  const bytes = (k: string): Uint8Array => (typeof o[k] === 'string' && /^[0-9a-f]{32}$/.test(o[k] as string) ? new Uint8Array(Buffer.from(o[k] as string, 'hex')) : new Uint8Array(0));
  const a: PoolAttr = {
    signature: typeof o.signature === 'string' ? o.signature : '',
    major: num('major'),
    compatFeatures: num('compatFeatures'),
    incompatFeatures: num('incompatFeatures'),
    roCompatFeatures: num('roCompatFeatures'),
    poolsetUuid: bytes('poolsetUuid'),
    uuid: bytes('uuid'),
    nextUuid: bytes('nextUuid'),
    prevUuid: bytes('prevUuid'),
    userFlags: bytes('userFlags'),
  };
  checkAttr(a);
  return a;
}

/** Writes a header into `out` (4096 bytes), checksum included. */
export function encodeHeader(h: PoolHeader, out: Uint8Array): void {
  const b = Buffer.from(out.buffer, out.byteOffset, POOL_HDR_SIZE);
  b.fill(0);
  b.write(h.attr.signature, 0, 8, 'latin1');
  b.writeUInt32LE(h.attr.major, 8);
  b.writeUInt32LE(h.attr.compatFeatures, 12);
  b.writeUInt32LE(h.attr.incompatFeatures, 16);
  b.writeUInt32LE(h.attr.roCompatFeatures, 20);
  BYTES16.forEach((k, i) => b.set(h.attr[k], 24 + 16 * i));
  b.write(MAGIC, 104, 'latin1');
  b.writeBigUInt64LE(BigInt(h.poolSize), 112);
  b.writeUInt32LE(h.part, 120);
  b.writeUInt32LE(h.parts, 124);
  b.writeUInt32LE(crc32c(b.subarray(0, CRC_AT)), CRC_AT);
}

/** Why `src` is not a valid header, or null when it is. */
function invalid(src: Uint8Array): string | null {
  if (src.byteLength < POOL_HDR_SIZE) return `is ${src.byteLength} bytes, not ${POOL_HDR_SIZE}`;
  const b = Buffer.from(src.buffer, src.byteOffset, POOL_HDR_SIZE);
  if (b.toString('latin1', 104, 112) !== MAGIC) return 'is not a pool header';
  if (b.readUInt32LE(CRC_AT) !== crc32c(b.subarray(0, CRC_AT))) return 'fails its checksum';
  return null;
}

/** Reads and verifies a header; a bad checksum or magic raises EINVAL ("inconsistent pool"). */
export function decodeHeader(src: Uint8Array, where: string): PoolHeader {
  const why = invalid(src);
  if (why === 'is not a pool header') throw rpmemError('EINVAL', `${where}: no pool header (not created by an rpmem target, or overwritten)`);
  if (why !== null) throw rpmemError('EINVAL', `${where}: the pool header ${why}`);
  const b = Buffer.from(src.buffer, src.byteOffset, POOL_HDR_SIZE);
  const sig = b.subarray(0, 8);
  const end = sig.indexOf(0);
  const attr: PoolAttr = {
    signature: sig.toString('latin1', 0, end < 0 ? 8 : end),
    major: b.readUInt32LE(8),
    compatFeatures: b.readUInt32LE(12),
    incompatFeatures: b.readUInt32LE(16),
    roCompatFeatures: b.readUInt32LE(20),
    poolsetUuid: new Uint8Array(16),
    uuid: new Uint8Array(16),
    nextUuid: new Uint8Array(16),
    prevUuid: new Uint8Array(16),
    userFlags: new Uint8Array(16),
  };
  BYTES16.forEach((k, i) => attr[k].set(b.subarray(24 + 16 * i, 40 + 16 * i)));
  return { attr, poolSize: Number(b.readBigUInt64LE(112)), part: b.readUInt32LE(120), parts: b.readUInt32LE(124) };
}

/** The backup of the header of the part at `partPath`. */
export function backupPathOf(partPath: string): string {
  return `${partPath}.hdr`;
}

/**
 * What opening a part needs done to its two header copies:
 * - none: both verify and agree;
 * - primary: the header was damaged (`damage` says how); write the backup over it;
 * - backup: the backup was damaged (`damage`); write the header over it;
 * - new-backup: no backup yet (a pool made before backups existed, or the file was removed): write it;
 * - stale-backup: both verify but differ (an attribute change stopped between the two writes;
 *   the header, written first, is the newer): write the header over it.
 */
export type HeaderFix = { kind: 'none' | 'new-backup' | 'stale-backup' } | { kind: 'primary' | 'backup'; damage: string };

/**
 * Chooses the copy to trust for part `part`: `primary` is the part's first 4096
 * bytes, `backup` the backup file's bytes (null: no backup file). A copy is
 * good when it verifies and names this part. Both bad: EINVAL naming the file
 * and why each copy fails.
 */
export function recoverHeader(primary: Uint8Array, backup: Uint8Array | null, part: number, file: string): { header: PoolHeader; fix: HeaderFix } {
  const bfile = backupPathOf(file);
  const check = (src: Uint8Array): string | null => {
    const why = invalid(src);
    if (why !== null) return why;
    const h = decodeHeader(src, file);
    return h.part === part ? null : `belongs to part ${h.part}, not ${part}`;
  };
  const p = check(primary);
  const b = backup === null ? 'is missing' : check(backup);
  if (p === null) {
    const header = decodeHeader(primary, file);
    if (backup === null) return { header, fix: { kind: 'new-backup' } };
    if (b !== null) return { header, fix: { kind: 'backup', damage: `the header backup ${bfile} was damaged (it ${b})` } };
    const same = Buffer.compare(Buffer.from(primary.buffer, primary.byteOffset, POOL_HDR_SIZE), Buffer.from(backup.buffer, backup.byteOffset, POOL_HDR_SIZE)) === 0;
    return { header, fix: { kind: same ? 'none' : 'stale-backup' } };
  }
  if (b === null) return { header: decodeHeader(backup!, bfile), fix: { kind: 'primary', damage: `the header of ${file} was damaged (it ${p})` } };
  throw rpmemError('EINVAL', `${file}: the pool header ${p === 'is not a pool header' ? 'is missing (not created by an rpmem target, or overwritten)' : p}, and its backup ${bfile} ${b}: the pool cannot be opened`);
}
