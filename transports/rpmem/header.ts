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
 */
import { rpmemError } from '../../runtime/errors.js';
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

/** Reads and verifies a header; a bad checksum or magic raises EINVAL ("inconsistent pool"). */
export function decodeHeader(src: Uint8Array, where: string): PoolHeader {
  const b = Buffer.from(src.buffer, src.byteOffset, POOL_HDR_SIZE);
  if (b.toString('latin1', 104, 112) !== MAGIC) throw rpmemError('EINVAL', `${where}: no pool header (not created by an rpmem target, or overwritten)`);
  if (b.readUInt32LE(CRC_AT) !== crc32c(b.subarray(0, CRC_AT))) throw rpmemError('EINVAL', `${where}: the pool header fails its checksum`);
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
