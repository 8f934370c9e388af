/**
 * The userspace stand-in for the kernel's segment table. Each process that
 * makes segments keeps a small table in a memfd named `mprun-xpmem-exports`;
 * a getter finds it through /proc/<pid>/fd (the kernel checks that the getter
 * may access that process), reads the entry, and maps or copies from there.
 * Segment ids of these backends have bit 62 set, which kernel ids never have
 * (their `uniq` half is capped at INT_MAX >> 1).
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { native } from '../../native/index.js';
import { xpmemError } from '../../core/errors.js';

const TABLE_NAME = 'mprun-xpmem-exports';
const SLOTS = 4096;
const ENTRY_BYTES = 64;
// Int32 fields of an entry
const F_STATE = 0; // 0 free, 1 live
const F_GEN = 1;
const F_FD = 2; // exported fd of a shm segment, -1 for cma
const F_MODE = 3;
const F_UID = 4;
const F_KIND = 5; // 1 shm, 2 cma
// BigInt64 fields (index in 8-byte units within the entry)
const Q_OFFSET = 3;
const Q_LENGTH = 4;
const Q_ADDR = 5;

export const KIND_SHM = 1;
export const KIND_CMA = 2;
const USERSPACE_BIT = 1n << 62n;

export interface SegmentEntry {
  pid: number;
  kind: typeof KIND_SHM | typeof KIND_CMA;
  fd: number;
  mode: number;
  uid: number;
  offset: bigint;
  length: bigint;
  addr: bigint;
}

class Table {
  readonly i32: Int32Array;
  readonly i64: BigInt64Array;
  constructor(readonly buffer: ArrayBuffer) {
    this.i32 = new Int32Array(buffer);
    this.i64 = new BigInt64Array(buffer);
  }
  read(slot: number, pid: number, gen: number): SegmentEntry | null {
    const b = (slot * ENTRY_BYTES) / 4;
    const q = (slot * ENTRY_BYTES) / 8;
    if (Atomics.load(this.i32, b + F_STATE) !== 1 || Atomics.load(this.i32, b + F_GEN) !== gen) return null;
    const kind = this.i32[b + F_KIND];
    if (kind !== KIND_SHM && kind !== KIND_CMA) return null;
    return {
      pid,
      kind,
      fd: this.i32[b + F_FD]!,
      mode: this.i32[b + F_MODE]!,
      uid: this.i32[b + F_UID]!,
      offset: this.i64[q + Q_OFFSET]!,
      length: this.i64[q + Q_LENGTH]!,
      addr: this.i64[q + Q_ADDR]!,
    };
  }
}

let own: Table | null = null;
let nextSlot = 0;
const peerTables = new Map<number, Table>();

function ownTable(): Table {
  if (own === null) {
    const n = native();
    const fd = n.memfdCreate(TABLE_NAME, SLOTS * ENTRY_BYTES);
    own = new Table(n.mapFd(fd, 0, SLOTS * ENTRY_BYTES, fd));
  }
  return own;
}

export function isUserspaceSegid(segid: bigint): boolean {
  return (segid & USERSPACE_BIT) !== 0n;
}

function encode(pid: number, slot: number, gen: number): bigint {
  return USERSPACE_BIT | (BigInt(gen & 0x3fff) << 48n) | (BigInt(slot) << 32n) | BigInt(pid >>> 0);
}

export function decode(segid: bigint): { pid: number; slot: number; gen: number } {
  return { pid: Number(segid & 0xffffffffn), slot: Number((segid >> 32n) & 0xffffn), gen: Number((segid >> 48n) & 0x3fffn) };
}

/** Records a segment of this process and returns its id. */
export function publish(e: Omit<SegmentEntry, 'pid' | 'uid'>): bigint {
  const t = ownTable();
  for (let tries = 0; tries < SLOTS; tries++) {
    const slot = nextSlot;
    nextSlot = (nextSlot + 1) % SLOTS;
    const b = (slot * ENTRY_BYTES) / 4;
    if (t.i32[b + F_STATE] !== 0) continue;
    const q = (slot * ENTRY_BYTES) / 8;
    const gen = ((t.i32[b + F_GEN]! + 1) & 0x3fff) || 1;
    t.i32[b + F_FD] = e.fd;
    t.i32[b + F_MODE] = e.mode;
    t.i32[b + F_UID] = process.getuid?.() ?? 0;
    t.i32[b + F_KIND] = e.kind;
    t.i64[q + Q_OFFSET] = e.offset;
    t.i64[q + Q_LENGTH] = e.length;
    t.i64[q + Q_ADDR] = e.addr;
    Atomics.store(t.i32, b + F_GEN, gen);
    Atomics.store(t.i32, b + F_STATE, 1);
    return encode(process.pid, slot, gen);
  }
  throw xpmemError('EBUSY', 'xpmem_make: segment ids exhausted');
}

/** Removes a segment of this process: later gets fail with ENOENT. */
export function unpublish(segid: bigint): void {
  const { pid, slot, gen } = decode(segid);
  if (pid !== process.pid) throw xpmemError('EACCES', 'xpmem_remove: not the owner of the segment');
  const t = own;
  const b = (slot * ENTRY_BYTES) / 4;
  if (t === null || Atomics.load(t.i32, b + F_STATE) !== 1 || t.i32[b + F_GEN] !== gen) throw xpmemError('ENOENT', 'xpmem_remove: no such segment');
  Atomics.store(t.i32, b + F_STATE, 0);
}

function findPeerTable(pid: number): Table {
  const cached = peerTables.get(pid);
  if (cached !== undefined) return cached;
  const n = native();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw xpmemError(code === 'EACCES' || code === 'EPERM' ? 'EACCES' : 'ENOENT', `xpmem_get: process ${pid} is not reachable`);
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (!target.startsWith(`/memfd:${TABLE_NAME}`)) continue;
    const local = n.openPeerFd(pid, Number(fd));
    try {
      const t = new Table(n.mapFd(local, 0, SLOTS * ENTRY_BYTES));
      peerTables.set(pid, t);
      return t;
    } finally {
      n.closeFd(local);
    }
  }
  throw xpmemError('ENOENT', `xpmem_get: process ${pid} exports no segments`);
}

/** Looks a segment up, in this process or another. */
export function lookup(segid: bigint): SegmentEntry {
  const { pid, slot, gen } = decode(segid);
  if (pid === 0) throw xpmemError('EINVAL', 'xpmem_get: invalid segment id');
  let t: Table;
  if (pid === process.pid) {
    if (own === null) throw xpmemError('ENOENT', 'xpmem_get: no such segment');
    t = own;
  } else {
    if (!processAlive(pid)) {
      forgetPeer(pid);
      throw xpmemError('ENOENT', `xpmem_get: the owner (pid ${pid}) has exited`);
    }
    t = findPeerTable(pid);
  }
  const e = t.read(slot, pid, gen);
  if (e === null) throw xpmemError('ENOENT', 'xpmem_get: no such segment (removed, or its owner exited)');
  return e;
}

export function forgetPeer(pid: number): void {
  const t = peerTables.get(pid);
  if (t === undefined) return;
  peerTables.delete(pid);
  native().release(t.buffer);
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
