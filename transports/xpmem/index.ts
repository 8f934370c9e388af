/**
 * `mprun/xpmem`: the XPMEM API over the best mechanism this machine has.
 *
 *   const segid = make(view);             // export memory (bigint id)
 *   const apid = get(segid, XPMEM_RDWR);  // in another process: gain access
 *   const att = attach(apid, 0, length);  // att.bytes: plain loads and stores
 *   detach(att); release(apid); remove(segid);
 *
 * Backends, best first: the kernel module through its ioctls on /dev/xpmem;
 * shared-memory segments (memfd) mapped into the attacher, which gives the same
 * single-copy loads and stores; CMA (process_vm_readv/writev) for memory that
 * is not in a shared segment, which can copy but not map. Errors carry XPMEM's
 * errno names in `err.errno`.
 */
import { native, nativeAvailable, nativeError } from '../../native/index.js';
import { MprunError, xpmemError } from '../../core/errors.js';
import { Attachment } from './attachment.js';
import { BACKEND_ORDER, XPMEM_RDONLY, XPMEM_RDWR, XPMEM_USERSPACE_VERSION, type XpmemBackendName } from './constants.js';
import { isUserspaceSegid, KIND_CMA, KIND_SHM, lookup, processAlive, publish, unpublish, type SegmentEntry } from './exports.js';

export { Attachment } from './attachment.js';
export { XPMEM_RDONLY, XPMEM_RDWR, XPMEM_PERMIT_MODE, type XpmemBackendName } from './constants.js';
export { allocShared } from '../shm/arena.js';

export interface BackendStatus {
  name: XpmemBackendName;
  available: boolean;
  /** Why it is unavailable, or what it rests on. */
  reason: string;
  /** Whether attach() maps memory (loads/stores) or only copies. */
  canMap: boolean;
}

let statusCache: BackendStatus[] | null = null;

/** Every backend with its availability and the reason; cheap and never throws. */
export function backends(): BackendStatus[] {
  if (statusCache !== null) return statusCache;
  if (!nativeAvailable()) {
    statusCache = BACKEND_ORDER.map((name) => ({ name, available: false, reason: nativeError ?? 'native addon missing', canMap: name !== 'cma' }));
    return statusCache;
  }
  const n = native();
  const probe = n.xpmem.probe();
  const kernel: BackendStatus = {
    name: 'kernel',
    available: probe.available,
    reason: probe.available ? `/dev/xpmem, interface version 0x${(probe.version ?? 0).toString(16)}` : `no kernel XPMEM: ${probe.reason ?? 'unknown'}`,
    canMap: true,
  };
  let shm: BackendStatus;
  try {
    const fd = n.memfdCreate('mprun-probe', 4096);
    n.closeFd(fd);
    shm = { name: 'shm', available: true, reason: 'memfd segments mapped through /proc/<pid>/fd', canMap: true };
  } catch (e) {
    shm = { name: 'shm', available: false, reason: `memfd_create failed: ${(e as Error).message}`, canMap: true };
  }
  let cma: BackendStatus;
  try {
    const src = new Uint8Array([1, 2, 3, 4]);
    const dst = new Uint8Array(4);
    n.cmaRead(process.pid, n.addressOf(src), dst);
    cma = dst[3] === 4 ? { name: 'cma', available: true, reason: 'process_vm_readv/writev', canMap: false } : { name: 'cma', available: false, reason: 'process_vm_readv returned wrong data', canMap: false };
  } catch (e) {
    cma = { name: 'cma', available: false, reason: `process_vm_readv failed: ${(e as Error).message}`, canMap: false };
  }
  statusCache = [kernel, shm, cma];
  return statusCache;
}

function firstAvailable(): XpmemBackendName | null {
  const env = process.env.MPRUN_XPMEM_BACKEND;
  if (env !== undefined && env !== '') {
    if (!(BACKEND_ORDER as readonly string[]).includes(env)) throw xpmemError('EINVAL', `MPRUN_XPMEM_BACKEND must be one of ${BACKEND_ORDER.join(', ')}, not ${env}`);
    const s = backends().find((b) => b.name === env)!;
    if (!s.available) throw xpmemError('ENODEV', `MPRUN_XPMEM_BACKEND=${env} is unavailable: ${s.reason}`);
    return env as XpmemBackendName;
  }
  return backends().find((b) => b.available)?.name ?? null;
}

let selected: XpmemBackendName | null | undefined;

/** The mechanism make() uses: 'kernel', 'shm' or 'cma' (MPRUN_XPMEM_BACKEND overrides). */
export function backendName(): XpmemBackendName | null {
  if (selected === undefined) selected = firstAvailable();
  return selected;
}

/** Forces a backend (tests run the same conformance suite over each). */
export function useBackend(name: XpmemBackendName | null): void {
  if (name !== null) {
    const s = backends().find((b) => b.name === name);
    if (s === undefined) throw xpmemError('EINVAL', `no XPMEM backend named '${String(name)}'; one of ${BACKEND_ORDER.join(', ')}`);
    if (!s.available) throw xpmemError('ENODEV', `${name} is unavailable: ${s.reason}`);
  }
  selected = name === null ? undefined : name;
}

/** The backend in use, as a property (`xpmem.backend`). */
export const backend: { readonly name: XpmemBackendName | null } = {
  get name() {
    return backendName();
  },
};

/** XPMEM's interface version (the kernel's, or the one our userspace backends implement). */
export function version(): number {
  if (backendName() === 'kernel') return native().xpmem.probe().version ?? -1;
  return XPMEM_USERSPACE_VERSION;
}

function requireBackend(): XpmemBackendName {
  const b = backendName();
  if (b === null) throw xpmemError('ENODEV', `no XPMEM backend is available: ${backends().map((s) => `${s.name}: ${s.reason}`).join('; ')}`);
  return b;
}

type Exportable = ArrayBufferView | ArrayBuffer;

/**
 * Exports `view`'s memory. `permit` is the octal mode checked at get() (the
 * XPMEM_PERMIT_MODE semantics; the owner's uid and root pass the owner bits).
 */
export function make(view: Exportable, permit = 0o600): bigint {
  if (!Number.isInteger(permit) || (permit & ~0o777) !== 0) throw xpmemError('EINVAL', 'xpmem_make: permit must be a mode within 0777');
  const length = view.byteLength;
  if (length === 0) throw xpmemError('EINVAL', 'xpmem_make: size 0');
  const b = requireBackend();
  const n = native();
  if (b === 'kernel') return n.xpmem.make(n.addressOf(view), BigInt(length), permit);
  const where = b === 'shm' ? n.locate(view) : null;
  if (where !== null && where[0] >= 0) {
    return publish({ kind: KIND_SHM, fd: where[0], mode: permit, offset: BigInt(where[1]), length: BigInt(length), addr: n.addressOf(view) });
  }
  return publish({ kind: KIND_CMA, fd: -1, mode: permit, offset: 0n, length: BigInt(length), addr: n.addressOf(view) });
}

export function remove(segid: bigint): void {
  if (isUserspaceSegid(segid)) return unpublish(segid);
  native().xpmem.remove(segid);
}

interface Access {
  entry: SegmentEntry | null; // null for kernel apids
  kernelApid: bigint;
  writable: boolean;
}
const accesses = new Map<bigint, Access>();
let nextApid = 1n;

function permitted(e: SegmentEntry, flags: number): boolean {
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return true; // CAP_IPC_OWNER, as in xpmem_ipcperms
  const bits = uid === e.uid ? (e.mode >> 6) & 7 : e.mode & 7;
  const need = flags === XPMEM_RDWR ? 6 : 4;
  return (bits & need) === need;
}

/** Gains access to a segment: XPMEM_RDWR or XPMEM_RDONLY. Returns an access id. */
export function get(segid: bigint, flags: number | 'rdwr' | 'rdonly' = XPMEM_RDWR): bigint {
  const f = flags === 'rdwr' ? XPMEM_RDWR : flags === 'rdonly' ? XPMEM_RDONLY : flags;
  if (f !== XPMEM_RDWR && f !== XPMEM_RDONLY) throw xpmemError('EINVAL', 'xpmem_get: flags must be XPMEM_RDWR or XPMEM_RDONLY');
  if (typeof segid !== 'bigint' || segid <= 0n) throw xpmemError('EINVAL', 'xpmem_get: invalid segment id');
  const apid = nextApid++;
  if (!isUserspaceSegid(segid)) {
    if (backendName() !== 'kernel') throw xpmemError('ENOENT', 'xpmem_get: a kernel segment id, but kernel XPMEM is not in use');
    accesses.set(apid, { entry: null, kernelApid: native().xpmem.get(segid, f), writable: f === XPMEM_RDWR });
    return apid;
  }
  const e = lookup(segid);
  if (!permitted(e, f)) throw xpmemError('EACCES', `xpmem_get: mode 0${e.mode.toString(8)} does not permit this access`);
  accesses.set(apid, { entry: e, kernelApid: 0n, writable: f === XPMEM_RDWR });
  return apid;
}

export function release(apid: bigint): void {
  const a = accesses.get(apid);
  if (a === undefined) throw xpmemError('ENOENT', 'xpmem_release: no such access id');
  accesses.delete(apid);
  if (a.entry === null) native().xpmem.release(a.kernelApid);
}

/** Attaches [offset, offset+length) of the segment behind `apid`. */
export function attach(apid: bigint, offset: number | bigint, length: number): Attachment {
  const a = accesses.get(apid);
  if (a === undefined) throw xpmemError('ENOENT', 'xpmem_attach: no such access id');
  const off = BigInt(offset);
  if (off < 0n || !Number.isInteger(length) || length <= 0) throw xpmemError('EINVAL', 'xpmem_attach: bad offset or length');
  const n = native();
  const e = a.entry;
  if (e === null) {
    // The kernel requires page alignment; it checks and says EINVAL itself.
    return new Attachment('kernel', length, 0, n.xpmem.attach(a.kernelApid, off, BigInt(length)), 0, 0n, true);
  }
  if (off + BigInt(length) > e.length) throw xpmemError('EINVAL', `xpmem_attach: [${off}, ${off + BigInt(length)}) runs past the segment's ${e.length} bytes`);
  if (!processAlive(e.pid)) throw xpmemError('ENOENT', `xpmem_attach: the owner (pid ${e.pid}) has exited`);
  if (e.kind === KIND_CMA) {
    if (e.pid === process.pid) throw xpmemError('EINVAL', 'xpmem_attach: cannot attach to a copy-only segment of this process');
    return new Attachment('cma', length, e.pid, null, 0, e.addr + off, a.writable);
  }
  // Map the enclosing pages of the owner's fd; hand out the exact range.
  const page = BigInt(n.pageSize());
  const start = e.offset + off;
  const mapStart = start - (start % page);
  const mapLength = Number(start - mapStart) + length;
  const fd = e.pid === process.pid ? e.fd : n.openPeerFd(e.pid, e.fd);
  try {
    const mapping = n.mapFd(fd, Number(mapStart), mapLength);
    return new Attachment('shm', length, e.pid, mapping, Number(start - mapStart), e.addr + off, a.writable);
  } finally {
    if (fd !== e.fd) n.closeFd(fd);
  }
}

/** Unmaps an attachment; every view of it becomes empty. */
export function detach(att: Attachment): void {
  att.detach();
}

export { processAlive as ownerAlive };

/** Attaches a peer's whole segment (made from page-aligned memory at its offset 0). */
export function attachWhole(segid: bigint | string, bytes: number): Attachment {
  return attach(get(BigInt(segid), XPMEM_RDWR), 0, bytes);
}

/** The mapped memory of a whole-segment attachment, so that offsets in it are the owner's offsets; null for CMA. */
export function mappedBuffer(att: Attachment): ArrayBuffer | null {
  if (!att.mapped) return null;
  if (att.mapOffset !== 0) throw new MprunError('ERR_MPRUN_XPMEM', 'a whole-segment attachment must start at a page boundary');
  return att.bytes!.buffer as ArrayBuffer;
}

/**
 * A peer's whole segment, attached the first time `buffer` is read and then
 * cached: a rank maps only the peers it touches (issue 13: attaching every
 * local peer's heap and arena at init made a node's startup O(p^2)).
 */
export class LazyAttachment {
  #att: Attachment | null = null;
  #detached = false;
  constructor(
    readonly segid: bigint | string,
    readonly bytes: number,
  ) {}

  /** Whether it has been attached. */
  get attached(): boolean {
    return this.#att !== null;
  }

  /** The mapped memory (offsets are the owner's), attached now if need be; null for CMA. */
  get buffer(): ArrayBuffer | null {
    if (this.#att === null) {
      if (this.#detached) throw xpmemError('EINVAL', 'attachment is detached');
      this.#att = attachWhole(this.segid, this.bytes);
    }
    return mappedBuffer(this.#att);
  }

  detach(): void {
    this.#detached = true;
    this.#att?.detach();
  }
}
