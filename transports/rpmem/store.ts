/**
 * The checkpoint store: how a job's state lies in rpmem pools, and the reads
 * and writes of it. The collective protocol that uses it is runtime/checkpoint.ts.
 *
 * Per rank, one pool `JOB/rank-R.gG.set` (G: a generation, new when the state
 * outgrows the pool; the old one is removed once no committed epoch needs it):
 *
 *   0        pool header (the daemon's)
 *   4096     superblock copy 0 | 8192 superblock copy 1   {epoch, slot, generation}
 *   12288    slot descriptor 0 | 77824 slot descriptor 1  {epoch, layout, chunk-table CRC}
 *   143360   slot 0 | slot 1: each a chunk table (CRC32C per 1 MiB chunk) then the data
 *
 * Per job, one pool `JOB/job.set` with two commit records (copy = epoch % 2):
 * {epoch, nranks, bytes, time, per rank: descriptor digest and generation}.
 *
 * Epoch e goes to slot e % 2, the inactive one: the slot of the last committed
 * epoch is never written, so a crash at any point leaves it restorable. Every
 * record, descriptor and superblock ends with a CRC32C of itself.
 */
import { MprunError } from '../../core/errors.js';
import type { RpmemLanes } from './lanes.js';
import { crc32c } from './crc.js';
import { emptyAttr, type PoolAttr } from './header.js';
import { POOL_HDR_SIZE } from './poolset.js';

export const CHUNK_BYTES = 1024 * 1024;

/** The pool set names of a job's pools on a target. */
export const jobSetName = (job: string): string => `${job}/job.set`;
export const rankSetName = (job: string, rank: number, generation: number): string => `${job}/rank-${rank}.g${generation}.set`;

/** Attributes of the store's pools: user flag 0 says which kind, bytes 4-7 the job's rank count. */
export function storeAttr(kind: 'rank' | 'job', nranks: number): PoolAttr {
  const a = emptyAttr();
  a.signature = 'MPRUNCKP';
  a.major = 1;
  a.userFlags[0] = kind === 'rank' ? 1 : 2;
  Buffer.from(a.userFlags.buffer, a.userFlags.byteOffset, 16).writeUInt32LE(nranks, 4);
  return a;
}

/** The rank count a store pool was made for (storeAttr). */
export function ranksOf(attr: PoolAttr | null): number {
  return Buffer.from(attr?.userFlags ?? new Uint8Array(16)).readUInt32LE(4);
}
const PAGE = 4096;
const SUPERBLOCK_AT = POOL_HDR_SIZE;
const DESCRIPTOR_AT = POOL_HDR_SIZE + 2 * PAGE;
const DESCRIPTOR_BYTES = 64 * 1024;
/** Where the slots start. */
export const META_BYTES = DESCRIPTOR_AT + 2 * DESCRIPTOR_BYTES;

const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** A protected array's place in a slot. */
export interface ArrayLayout {
  name: string;
  /** The TypedArray's constructor name (Float64Array, ...). */
  type: string;
  length: number;
  /** Byte offset in the slot's data. */
  offset: number;
  bytes: number;
}

export interface SlotInfo {
  epoch: number;
  slot: number;
  rank: number;
  nranks: number;
  totalBytes: number;
  nChunks: number;
  tableCrc: number;
  layout: ArrayLayout[];
  /** CRC32C of the encoded descriptor: what the commit record names. */
  digest: number;
}

export interface Superblock {
  epoch: number;
  slot: number;
  generation: number;
}

export interface CommitRecord {
  epoch: number;
  nranks: number;
  totalBytes: number;
  /** ms since the epoch (Date.now()) when committed. */
  time: number;
  digests: number[];
  generations: number[];
}

/**
 * The identity of a commit across replicas. Its epoch alone is not: a run that
 * reached only some replicas went on from what they held, and another run that
 * reached only the others went on from theirs, each numbering its commits on
 * from the epoch it restored (diverged histories with epochs of the same number).
 */
export function commitKey(r: CommitRecord): string {
  return `${r.epoch}@${r.time}`;
}

/**
 * Newest commit first, by the time rank 0 committed it, then by epoch. Not by
 * epoch first: of two diverged histories the one the latest run continued
 * wins, though the other reached a higher epoch before it was left.
 */
export function newestCommitFirst(a: CommitRecord, b: CommitRecord): number {
  return b.time - a.time || b.epoch - a.epoch;
}

/** A checkpoint that fails verification: what failed, for the report. */
export class VerifyError extends Error {}

export function layoutOf(arrays: Map<string, ArrayBufferView>): ArrayLayout[] {
  let at = 0;
  return [...arrays].map(([name, a]) => {
    const l = { name, type: a.constructor.name, length: (a as unknown as { length: number }).length, offset: at, bytes: a.byteLength };
    at += a.byteLength;
    return l;
  });
}

export function totalOf(layout: ArrayLayout[]): number {
  return layout.reduce((s, l) => s + l.bytes, 0);
}

function tableBytesFor(stride: number): number {
  return roundUp(Math.ceil(stride / CHUNK_BYTES) * 4, PAGE);
}

/** Bytes of data one slot of a pool of `poolSize` holds. */
export function slotCapacity(poolSize: number): number {
  const stride = slotStride(poolSize);
  return stride - tableBytesFor(stride);
}

function slotStride(poolSize: number): number {
  return Math.floor((poolSize - META_BYTES) / 2 / PAGE) * PAGE;
}

/** The pool size for a state of `total` bytes. */
export function poolSizeFor(total: number): number {
  let stride = roundUp(Math.max(total, 1), PAGE) + tableBytesFor(roundUp(Math.max(total, 1), PAGE));
  while (stride - tableBytesFor(stride) < total) stride += PAGE;
  return META_BYTES + 2 * stride;
}

/** Where a slot's chunk table and data start in a pool of `poolSize` bytes. */
export function slotBase(poolSize: number, slot: number): { table: number; data: number } {
  const stride = slotStride(poolSize);
  const base = META_BYTES + slot * stride;
  return { table: base, data: base + tableBytesFor(stride) };
}

// ---- fixed-format records, each ending with a CRC32C of itself ----

function sealed(bytes: Buffer): Buffer {
  bytes.writeUInt32LE(crc32c(bytes.subarray(0, bytes.byteLength - 4)), bytes.byteLength - 4);
  return bytes;
}

function unseal(bytes: Uint8Array, magic: string, what: string): Buffer {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.toString('latin1', 0, 8) !== magic) throw new VerifyError(`${what}: not written yet`);
  if (b.readUInt32LE(b.byteLength - 4) !== crc32c(b.subarray(0, b.byteLength - 4))) throw new VerifyError(`${what}: fails its checksum`);
  return b;
}

export function encodeSuperblock(s: Superblock): Buffer {
  const b = Buffer.alloc(32);
  b.write('MPCKSUPR', 0, 'latin1');
  b.writeUInt32LE(s.slot, 8);
  b.writeUInt32LE(s.generation, 12);
  b.writeDoubleLE(s.epoch, 16);
  return sealed(b);
}

export function decodeSuperblock(bytes: Uint8Array): Superblock {
  const b = unseal(bytes.subarray(0, 32), 'MPCKSUPR', 'superblock');
  return { slot: b.readUInt32LE(8), generation: b.readUInt32LE(12), epoch: b.readDoubleLE(16) };
}

export function superblockAt(copy: number): number {
  return SUPERBLOCK_AT + copy * PAGE;
}

export function descriptorAt(slot: number): number {
  return DESCRIPTOR_AT + slot * DESCRIPTOR_BYTES;
}

export function encodeDescriptor(s: Omit<SlotInfo, 'digest'>): Buffer {
  const layout = Buffer.from(JSON.stringify(s.layout));
  if (48 + layout.byteLength + 4 > DESCRIPTOR_BYTES) throw new MprunError('ERR_MPRUN_CHECKPOINT', `too many protected arrays: their names and types take ${layout.byteLength} bytes (at most ${DESCRIPTOR_BYTES - 52})`);
  const b = Buffer.alloc(48 + layout.byteLength + 4);
  b.write('MPCKSLOT', 0, 'latin1');
  b.writeUInt32LE(s.slot, 8);
  b.writeUInt32LE(s.rank, 12);
  b.writeUInt32LE(s.nranks, 16);
  b.writeUInt32LE(s.nChunks, 20);
  b.writeDoubleLE(s.epoch, 24);
  b.writeDoubleLE(s.totalBytes, 32);
  b.writeUInt32LE(s.tableCrc, 40);
  b.writeUInt32LE(layout.byteLength, 44);
  layout.copy(b, 48);
  return sealed(b);
}

export function decodeDescriptor(bytes: Uint8Array, what: string): SlotInfo {
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (head.toString('latin1', 0, 8) !== 'MPCKSLOT') throw new VerifyError(`${what}: slot descriptor not written`);
  const n = head.readUInt32LE(44);
  if (48 + n + 4 > bytes.byteLength) throw new VerifyError(`${what}: slot descriptor fails its checksum`);
  const b = unseal(bytes.subarray(0, 48 + n + 4), 'MPCKSLOT', `${what}: slot descriptor`);
  return {
    slot: b.readUInt32LE(8),
    rank: b.readUInt32LE(12),
    nranks: b.readUInt32LE(16),
    nChunks: b.readUInt32LE(20),
    epoch: b.readDoubleLE(24),
    totalBytes: b.readDoubleLE(32),
    tableCrc: b.readUInt32LE(40),
    layout: JSON.parse(b.toString('utf8', 48, 48 + n)) as ArrayLayout[],
    digest: crc32c(b),
  };
}

export function recordBytes(nranks: number): number {
  return roundUp(48 + 8 * nranks + 4, PAGE);
}

export function jobPoolSize(nranks: number): number {
  return POOL_HDR_SIZE + 2 * recordBytes(nranks);
}

export function recordAt(copy: number, nranks: number): number {
  return POOL_HDR_SIZE + copy * recordBytes(nranks);
}

export function encodeRecord(r: CommitRecord): Buffer {
  const b = Buffer.alloc(48 + 8 * r.nranks + 4);
  b.write('MPCKJOB1', 0, 'latin1');
  b.writeUInt32LE(r.nranks, 8);
  b.writeDoubleLE(r.epoch, 16);
  b.writeDoubleLE(r.totalBytes, 24);
  b.writeDoubleLE(r.time, 32);
  for (let i = 0; i < r.nranks; i++) {
    b.writeUInt32LE(r.digests[i]! >>> 0, 48 + 8 * i);
    b.writeUInt32LE(r.generations[i]!, 52 + 8 * i);
  }
  return sealed(b);
}

/**
 * Both commit records of a job pool that verify, newest first. `notes`: the
 * copies that fail verification (a copy never written is no news). Other
 * failures (the target, the network) are thrown.
 */
export async function readCommitRecords(pool: RpmemLanes, attr: PoolAttr | null, what: string): Promise<{ nranks: number; records: CommitRecord[]; notes: string[] }> {
  const nranks = ranksOf(attr);
  const records: CommitRecord[] = [];
  const notes: string[] = [];
  for (const copy of [0, 1]) {
    try {
      records.push(decodeRecord(await pool.read(new Uint8Array(recordBytes(nranks)), recordAt(copy, nranks)), `${what} ${copy}`));
    } catch (e) {
      if (!(e instanceof VerifyError)) throw e;
      if (!e.message.includes('no commit record')) notes.push(e.message);
    }
  }
  return { nranks, records: records.sort(newestCommitFirst), notes };
}

/** The commit record in `bytes` (a whole record area), or a VerifyError. */
export function decodeRecord(bytes: Uint8Array, what: string): CommitRecord {
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (head.toString('latin1', 0, 8) !== 'MPCKJOB1') throw new VerifyError(`${what}: no commit record`);
  const nranks = head.readUInt32LE(8);
  if (48 + 8 * nranks + 4 > bytes.byteLength) throw new VerifyError(`${what}: commit record fails its checksum`);
  const b = unseal(bytes.subarray(0, 48 + 8 * nranks + 4), 'MPCKJOB1', `${what}: commit record`);
  const r: CommitRecord = { nranks, epoch: b.readDoubleLE(16), totalBytes: b.readDoubleLE(24), time: b.readDoubleLE(32), digests: [], generations: [] };
  for (let i = 0; i < nranks; i++) {
    r.digests.push(b.readUInt32LE(48 + 8 * i));
    r.generations.push(b.readUInt32LE(52 + 8 * i));
  }
  return r;
}

// ---- slot I/O ----

/** The state's bytes as views, in layout order. */
export function viewsOf(arrays: Iterable<ArrayBufferView>): Uint8Array[] {
  return [...arrays].map((a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

/** Splits a concatenation of views at chunk boundaries: pieces of at most one chunk. */
function* pieces(views: Uint8Array[]): Generator<{ chunk: number; at: number; bytes: Uint8Array }> {
  let at = 0;
  for (const v of views) {
    let o = 0;
    while (o < v.byteLength) {
      const chunkEnd = (Math.floor(at / CHUNK_BYTES) + 1) * CHUNK_BYTES;
      const n = Math.min(v.byteLength - o, chunkEnd - at);
      yield { chunk: Math.floor(at / CHUNK_BYTES), at, bytes: v.subarray(o, o + n) };
      o += n;
      at += n;
    }
  }
}

export interface WriteSlotArgs {
  epoch: number;
  rank: number;
  nranks: number;
  layout: ArrayLayout[];
  /** The state, in layout order. */
  views: Uint8Array[];
  /** Called with bytes sent so far (progress). */
  progress?: (bytes: number) => void;
}

/**
 * Checksums the state per chunk and writes it, its chunk table and its
 * descriptor into slot epoch % 2 of each pool (replicas in parallel, chunks
 * spread over the lanes). Resolves per replica: the descriptor, durable with
 * the data, or the error that replica failed with.
 */
export async function writeSlot(replicas: RpmemLanes[], a: WriteSlotArgs): Promise<Array<SlotInfo | Error>> {
  const total = totalOf(a.layout);
  const slot = a.epoch % 2;
  const nChunks = Math.ceil(total / CHUNK_BYTES);
  const crcs = new Uint32Array(nChunks);
  // A piece that is a whole chunk carries its chunk's CRC on the wire too.
  const whole = new Map<number, number>();
  for (const p of pieces(a.views)) {
    crcs[p.chunk] = crc32c(p.bytes, crcs[p.chunk]);
    if (p.bytes.byteLength === CHUNK_BYTES || p.at + p.bytes.byteLength === total) whole.set(p.at, crcs[p.chunk]!);
  }
  const table = new Uint8Array(crcs.buffer);
  const desc = { epoch: a.epoch, slot, rank: a.rank, nranks: a.nranks, totalBytes: total, nChunks, tableCrc: crc32c(table), layout: a.layout };
  const descBytes = encodeDescriptor(desc);
  const info: SlotInfo = { ...desc, digest: crc32c(descBytes) };
  return Promise.all(
    replicas.map(async (pool) => {
      try {
        // Each replica's own slot offsets (readSlot's): replicas' pools may differ in size (an
        // existing pool is kept when big enough), and the first one's put a smaller pool's slot 1
        // inside a bigger one's slot 0, over its committed epoch.
        const { table: tableAt, data: dataAt } = slotBase(pool.size, slot);
        if (total > slotCapacity(pool.size)) throw new MprunError('ERR_MPRUN_CHECKPOINT', `state of ${total} bytes does not fit the pool (${slotCapacity(pool.size)} per slot)`);
        // Each lane streams its own chunks; lanes run side by side.
        let sent = 0;
        const byLane: Array<Array<{ at: number; chunk: number; bytes: Uint8Array }>> = Array.from({ length: pool.nlanes }, () => []);
        for (const p of pieces(a.views)) byLane[p.chunk % pool.nlanes]!.push(p);
        await Promise.all(
          byLane.map(async (list, lane) => {
            for (const p of list) {
              const crc = p.at % CHUNK_BYTES === 0 ? whole.get(p.at) : undefined;
              await pool.write(dataAt + p.at, p.bytes, { lane, ...(crc !== undefined ? { crc } : {}) });
              sent += p.bytes.byteLength;
              a.progress?.(sent);
            }
          }),
        );
        if (table.byteLength > 0) await pool.write(tableAt, table, { lane: 0 });
        // The descriptor goes with the data, made durable by the same drains: a slot counts
        // only once a commit record names its digest, and that record is written after them.
        await pool.write(descriptorAt(slot), descBytes, { lane: 0 });
        await Promise.all(Array.from({ length: pool.nlanes }, (_, lane) => pool.drain({ lane })));
        return info;
      } catch (e) {
        return e as Error;
      }
    }),
  );
}

/** Reads a slot's descriptor. */
export async function readDescriptor(pool: RpmemLanes, slot: number, what: string): Promise<SlotInfo> {
  return decodeDescriptor(await pool.read(new Uint8Array(DESCRIPTOR_BYTES), descriptorAt(slot), { lane: 0 }), what);
}

/**
 * Reads slot `info.slot` and verifies every chunk against the table and the
 * table against the descriptor; throws a VerifyError naming the first chunk
 * that fails. The data lands in `into` (views in layout order, totalBytes in
 * all: restore reads straight into the protected arrays, which the protocol
 * overwrites with an intact epoch or abandons), or, with null, in scratch
 * buffers (verification only).
 */
export async function readSlot(pool: RpmemLanes, info: SlotInfo, into: Uint8Array[] | null, what: string, progress?: (bytes: number) => void): Promise<void> {
  const { table: tableAt, data: dataAt } = slotBase(pool.size, info.slot);
  if (info.totalBytes > slotCapacity(pool.size)) throw new VerifyError(`${what}: descriptor claims ${info.totalBytes} bytes, more than the slot holds`);
  const table = new Uint8Array(info.nChunks * 4);
  if (table.byteLength > 0) await pool.read(table, tableAt);
  if (crc32c(table) !== info.tableCrc) throw new VerifyError(`${what}: chunk table fails its checksum`);
  const crcs = new Uint32Array(table.buffer);
  // The pieces of each chunk (a chunk may span two arrays).
  const byChunk: Array<Array<{ at: number; bytes: Uint8Array }>> = Array.from({ length: info.nChunks }, () => []);
  if (into !== null) {
    if (into.reduce((n, v) => n + v.byteLength, 0) !== info.totalBytes) throw new VerifyError(`${what}: the destination does not hold ${info.totalBytes} bytes`);
    for (const p of pieces(into)) byChunk[p.chunk]!.push(p);
  }
  // Several chunks in flight over the lanes; each verified as it lands.
  const inflight = 8;
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    const scratch = into === null ? new Uint8Array(CHUNK_BYTES) : null;
    while (next < info.nChunks) {
      const c = next++;
      const start = c * CHUNK_BYTES;
      const n = Math.min(info.totalBytes, start + CHUNK_BYTES) - start;
      const parts = scratch !== null ? [{ at: start, bytes: scratch.subarray(0, n) }] : byChunk[c]!;
      await Promise.all(parts.map((p) => pool.read(p.bytes, dataAt + p.at, { lane: c % pool.nlanes })));
      let crc = 0;
      for (const p of parts) crc = crc32c(p.bytes, crc);
      if (crc !== crcs[c]) throw new VerifyError(`${what}: chunk ${c} (bytes ${start}-${start + n}) fails its CRC32C`);
      done += n;
      progress?.(done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inflight, Math.max(1, info.nChunks)) }, worker));
}
