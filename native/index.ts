/**
 * Typed loader of the native addon (native/*.cc, built by `npm install`).
 * Native code is where measurement or the platform says so, each file saying
 * why in its header: system calls (memfd, mmap, CMA, futexes, XPMEM ioctls,
 * affinity), the reduction kernels and CRC32C (vectorized loops), the rpmem
 * target's lane threads (a thread per lane beat the event loop 2x), and the
 * run-time bindings of libpmem, PMIx and UCX (dlopened C libraries). Policy
 * (which backend, what to retry, what to tell the user) stays in TypeScript.
 */
import { constants as bufferConstants } from 'node:buffer';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MprunError } from '../core/errors.js';

export interface XpmemProbe {
  available: boolean;
  reason?: string;
  version?: number;
}

export interface NativeXpmem {
  probe(): XpmemProbe;
  make(addr: bigint, size: bigint, permit: number): bigint;
  remove(segid: bigint): void;
  get(segid: bigint, flags: number): bigint;
  release(apid: bigint): void;
  attach(apid: bigint, offset: bigint, size: bigint): ArrayBuffer;
}

type Bytes = ArrayBufferView | ArrayBuffer;

/** An opaque handle of native/coll.cc. */
export type CollTeamHandle = { readonly __collTeam: unique symbol };

/**
 * collTeam's result: the handle, and the team's small collectives bound to it,
 * which take their arguments from collTeam's `args`: [round, plan, who or
 * root, spinNs, dozeNs, published] (no argument to convert and no handle to unwrap per
 * call). Each wait polls for spinNs, then sleeps on the rank's doorbell for
 * up to dozeNs, then returns how far it got.
 */
export interface CollTeamBinding {
  handle: CollTeamHandle;
  /** args [round, -, -, spinNs, dozeNs]: whether every member reached the round. */
  barrier(): boolean;
  /**
   * args [round, collPlan(bytes, kind, dtype, op), root * 2^20 + nRead, spinNs, dozeNs, published (1: an earlier call of
   * this round published our contribution)]; the data in and out of the team's staging array.
   */
  reduce(): number;
  /** args [round, collPlan(bytes, 0, dtype, 0), root, spinNs, dozeNs]; the data in and out of the team's staging array. */
  bcast(): number;
}
/** An opaque handle of native/queue.cc. */
export type QueueHandle = { readonly __queues: unique symbol };

/**
 * queueOpen's result: the handle, and the staged eager paths bound to it,
 * which take their arguments from queueOpen's `args` (no argument to convert
 * and no handle to unwrap on a small message's critical path).
 */
export interface QueueBinding {
  handle: QueueHandle;
  /** queueSendEager of the first args[4] bytes of the staging array; args: [dest, tag, dtype, origin, bytes]. */
  sendStaged(): boolean;
  /** queueRecvInto into the staging array; args: [room, dtype, source, tag, spinNs, dozeNs]; source and tag into queueOpen's `out`. */
  recvStaged(): number;
}

export interface NativeBinding {
  setErrorClass(cls: typeof MprunError): void;
  memfdCreate(name: string, size: number): number;
  shmCreate(name: string, size: number): number;
  openPeerFd(pid: number, fd: number): number;
  fdSize(fd: number): number;
  /** Maps [offset, offset+length) of fd MAP_SHARED; `exportedFd` is recorded for locate(). */
  mapFd(fd: number, offset: number, length: number, exportedFd?: number): ArrayBuffer;
  /** Detaches the buffer (views become empty) and unmaps it now. */
  release(buffer: ArrayBuffer): boolean;
  closeFd(fd: number): void;
  /** [exportedFd, offset in mapping, mapping length] when `view` lies in a live mapping. */
  locate(view: Bytes): [number, number, number] | null;
  addressOf(view: Bytes): bigint;
  pageSize(): number;
  /** The longest mapping mapFd and attach hand out as one ArrayBuffer (longer ones are refused). */
  setMaxMapping(bytes: number): void;
  maxMapping(): number;
  dieWithParent(parentPid: number): void;
  allowPtraceAny(): void;
  setAffinity(cpus: number[]): void;
  getAffinity(): number[];
  cmaRead(pid: number, remoteAddr: bigint, dst: Bytes): number;
  cmaWrite(pid: number, remoteAddr: bigint, src: Bytes): number;
  /** 0: woken, 1: value differed, 2: timed out. */
  futexWait(word: Int32Array, index: number, expected: number, timeoutMs: number): 0 | 1 | 2;
  futexWake(word: Int32Array, index: number, count?: number): number;
  yield(): void;
  /** A monotonic clock, in milliseconds from an arbitrary origin (CLOCK_MONOTONIC): deadlines and intervals only. */
  nowMs(): number;
  /**
   * A thread that sleeps on participant door `doorIndex` for its JavaScript
   * (native/door-watch.cc): after doorArm(handle), onRing runs once the door
   * moves, or after `sliceMs` (10) without a ring (one can be lost).
   */
  doorWatch(words: Int32Array, sleepingIndex: number, doorIndex: number, wake: number, onRing: () => void, sliceMs?: number): number;
  /** Publishes that the participant sleeps for its wake classes; the caller then checks its condition once more. */
  doorArm(handle: number): void;
  doorUnwatch(handle: number): void;
  /** writev of the chunks to a non-blocking socket: the bytes it took, 0 when it is full (no exception); other errors throw. */
  socketWrite(fd: number, chunks: readonly Uint8Array[]): number;
  /** A vanished peer host (no FIN, no RST) ends the TCP connection with ETIMEDOUT within about `seconds`, idle or with data unacknowledged. */
  tcpDeadPeer(fd: number, seconds: number): void;
  /** A full memory fence (mfence): orders non-temporal stores of large copies. */
  fence(): void;
  /** dst[dstIndex + i] = dst[..] <op> src[srcIndex + i] for i < count; op codes as runtime/coll/ops.ts. */
  reduce(dst: ArrayBufferView, dstIndex: number, src: ArrayBufferView, srcIndex: number, count: number, op: number): void;
  /**
   * A team's small collectives in native code (native/coll.cc; runtime/coll/shm.ts and shm-reduce.ts drive them).
   * `stage`: the team's staging array, where small collectives' data passes in and out; `args`: the bound calls'
   * arguments (both kept alive by the caller with the handle).
   */
  collTeam(words: Int32Array, me: number, ack: Int32Array, data: Int32Array, sleeping: Int32Array, door: Int32Array, slots: number, slotBytes: number, headerBytes: number, yields: boolean, stage: ArrayBuffer, args: Float64Array): CollTeamBinding;
  collBank(team: CollTeamHandle, member: number, scratch: Uint8Array): void;
  /**
   * The eager path of a rank's node queues in native code (native/queue.cc; transports/shm/queue.ts drives it).
   * `stage` and `out` (2 words): where the staged calls take their payload and put a receive's source and tag;
   * `args` (5 words): the staged calls' arguments (all kept alive by the caller).
   */
  queueOpen(words: Int32Array, me: number, ringBytes: number, ring: Int32Array, tail: Int32Array, head: Int32Array, want: Int32Array, sleeping: Int32Array, door: Int32Array, headSeen: Int32Array, state: Int32Array, stage: ArrayBuffer, out: Int32Array, args: Int32Array): QueueBinding;
  queueWorldRanks(queues: QueueHandle, worldOfLocal: Int32Array): void;
  queueSendEager(queues: QueueHandle, dest: number, tag: number, dtype: number, payload: ArrayBufferView, origin: number, bytes: number): boolean;
  queueRecvInto(queues: QueueHandle, into: ArrayBufferView, room: number, dtype: number, source: number, tag: number, spinNs: number, dozeNs: number, out: Int32Array): number;
  xpmem: NativeXpmem;
  /** CRC32C (Castagnoli), hardware-assisted where the CPU has SSE4.2; `seed` chains. */
  crc32c(bytes: Bytes, seed?: number): number;
  /** Whether libpmem.so.1 was found (persistence then goes through it). */
  pmemInfo(): { libpmem: boolean; reason: string };
  /** Maps a pool part (create: a new 0600 file with its space allocated now). */
  poolMap(path: string, length: number, create: boolean): { buffer: ArrayBuffer; isPmem: boolean; via: 'libpmem' | 'mmap'; fd: number };
  /**
   * Serves an rpmem lane (WRITE, DRAIN, READ) on its own thread until the client
   * closes it or laneStop(fd); `onEvent('log' | 'refused' | 'end', message)`.
   */
  laneServe(
    fd: number,
    received: Uint8Array,
    parts: Array<{ buffer: ArrayBuffer; fd: number; isPmem: boolean }>,
    extents: Float64Array,
    dataStart: number,
    size: number,
    state: Int32Array,
    name: string,
    lane: number,
    onEvent: (kind: 'log' | 'refused' | 'end', message: string) => void,
  ): void;
  laneStop(fd: number): void;
  /** pmem_persist / pmem_msync / msync of a range of a mapped part: null on success, else the errno name. */
  poolPersist(buffer: ArrayBuffer, offset: number, length: number, isPmem: boolean, deep: boolean): string | null;
  /** fsync of a file or directory (makes a create or unlink durable). */
  fsyncPath(path: string): void;
  /** An fd holding an exclusive flock on `path`; throws errno EAGAIN when another process holds it. */
  lockPool(path: string): number;
  /** UCX's UCP (native/ucx.cc); libucp is dlopened at the first probe()/open(), never at addon load. */
  ucx: NativeUcx;
  /** The PMIx client (native/pmix.cc); libpmix is dlopened at its first call, not here. */
  pmix: NativePmix;
  /** Shared-variable atomics: the agent's serving thread and a rank's requests (native/amo-server.cc; transports/dsm/amo.ts drives it). */
  amo: NativeAmo;
}

// ---- shared-variable atomics (native/amo-server.cc) ----

export interface NativeAmo {
  /**
   * Starts a serving thread listening on `host` (a numeric address; port chosen by the kernel), polling for `spinUs`
   * after each event before it sleeps, closing a connection whose hello has not come whole within `authTimeoutMs`.
   */
  serve(host: string, secret: string, nodeIndex: number, nnodes: number, spinUs: number, authTimeoutMs: number): { handle: number; port: number };
  /** Serves variable `id` from its segment (mapped until unregister): its page versions, data, pages and byte length. */
  register(handle: number, id: number, segment: ArrayBuffer, versionsOffset: number, dataOffset: number, pages: number, bytes: number): void;
  unregister(handle: number, id: number): void;
  /** Serves atomics on world rank `rank`'s heap (mapped until stop), ringing its doorbell (control words at those indices) for `wake`. */
  registerHeap(handle: number, rank: number, heap: ArrayBuffer, ctrlWords: Int32Array, sleepingIndex: number, doorIndex: number, wake: number): void;
  /** Stops the thread and closes its connections. */
  stop(handle: number): void;
  /** A connected descriptor that has sent the job secret, whose waits for a reply poll for `spinUs`, then last `waitMs` (throws ERR_MPRUN_UNREACHABLE with errno). */
  connect(host: string, port: number, secret: string, timeoutMs: number, waitMs: number, spinUs: number): number;
  /**
   * Sends one request and waits (the connection's wait) for its reply: the old
   * value, null (then reply()), or undefined when the server does not serve
   * that heap (ask the agent on the link). A refusal throws an Error with `status` (native/amo-server.cc's Status).
   */
  request(fd: number, id: number, byteOffset: number, op: number, dtype: number, a: number | bigint, b: number | bigint): number | bigint | null | undefined;
  /** A heap's bytes into `dst` (kept alive by the caller until done): true when there, else as request(). */
  get(fd: number, id: number, byteOffset: number, dst: Uint8Array): true | null | undefined;
  /** Writes a put of src's bytes (src reusable on return; no reply: flush() reports a refused one). */
  put(fd: number, id: number, byteOffset: number, src: Uint8Array): void;
  /** Every put written before it applied, waited for here: 0, or the status of the first put refused since the last flush. */
  flush(fd: number): number;
  /** The reply of the request in flight, as request() or get(). */
  reply(fd: number): number | bigint | true | null | undefined;
  close(fd: number): void;
}

// ---- PMIx (native/pmix.cc): the calls only; runtime/pmix.ts is the client to use ----

/** What probe() found: the library loads and its version is accepted, or why not. */
export interface PmixProbe {
  loaded: boolean;
  /** The library tried: $MPRUN_PMIX_LIB, else libpmix.so.2. */
  path: string;
  /** PMIx_Get_version()'s string, when the library had one. */
  version: string | null;
  reason: string | null;
}

/** Job-level keys (PMIX_RANK_WILDCARD) and this process's own; null where the server gives none. Integers of any PMIx integer type. */
export interface PmixJobInfo {
  size: number | null; // PMIX_JOB_SIZE
  localSize: number | null; // PMIX_LOCAL_SIZE
  universeSize: number | null; // PMIX_UNIV_SIZE
  numNodes: number | null; // PMIX_NUM_NODES
  localPeers: string | null; // PMIX_LOCAL_PEERS: "0,1,2"
  localRank: number | null; // PMIX_LOCAL_RANK
  nodeRank: number | null; // PMIX_NODE_RANK
  nodeId: number | null; // PMIX_NODEID (Slurm 22.05 reports the local node's id for every rank)
  hostname: string | null; // PMIX_HOSTNAME
  appnum: number | null; // PMIX_APPNUM
}

/** A PMIx value as read: byte objects as bytes (a copy), strings, booleans, integers; null: not found. */
export type PmixData = Uint8Array | string | number | bigint | boolean | null;

export interface PmixGetOptions {
  /** PMIX_OPTIONAL: look only in this process's data store (no fetch from the server). */
  optional?: boolean;
  /** PMIX_IMMEDIATE: no wait for data the server does not hold yet. */
  immediate?: boolean;
  /** PMIX_TIMEOUT, in seconds (0: none). */
  timeout?: number;
}

/** PMIx scopes of a put: who may read the value. */
export const PmixScope = { local: 1, remote: 2, global: 3 } as const;
export type PmixScopeCode = (typeof PmixScope)[keyof typeof PmixScope];

/**
 * The synchronous calls block the calling thread until the PMIx server answers
 * (meant for bootstrap); fenceAsync/getAsync block a libuv pool thread instead.
 * Failures throw MprunError: ERR_MPRUN_UNSUPPORTED (no library, a wrong version,
 * not started by a PMIx server), ERR_MPRUN_TIMEOUT, ERR_MPRUN_UNREACHABLE, else
 * ERR_MPRUN_SYSTEM, with `errno` the PMIx status name and `pmixStatus` its number.
 */
export interface NativePmix {
  /** Loads the library (never PMIx_Init); never throws. */
  probe(): PmixProbe;
  /** PMIx_Init; refuses when PMIX_NAMESPACE is not set (a singleton). Idempotent. */
  init(): { nspace: string; rank: number };
  jobInfo(): PmixJobInfo;
  put(scope: PmixScopeCode, key: string, value: Uint8Array | string): void;
  commit(): void;
  fence(collect: boolean, timeoutSeconds: number): void;
  fenceAsync(collect: boolean, timeoutSeconds: number): Promise<null>;
  /** `rank` may be rankWildcard for job-level keys. */
  get(rank: number, key: string, options?: PmixGetOptions): PmixData;
  getAsync(rank: number, key: string, options?: PmixGetOptions): Promise<PmixData>;
  abort(status: number, message: string): void;
  finalize(): void;
  state(): 'idle' | 'initialized' | 'finalized';
  readonly rankWildcard: number;
}

// ---- UCX (native/ucx.cc): the calls only; transports/ucx is the transport to use ----

/** What probe() found (it never throws): whether libucp loads with a usable version, and why not. */
export interface UcxProbe {
  loaded: boolean;
  /** Why not ('' when loaded). */
  reason: string;
  /** The library tried: $MPRUN_UCX_LIB, else libucp.so.0. */
  path: string;
  /** Whether the addon was built with UCX's headers (libucx-dev). */
  headers: boolean;
  /** ucp_get_version(), "1.13.1"; '' when unknown. */
  version: string;
}

export interface UcxOpenOptions {
  /** A native thread progresses the worker while JavaScript does not (worker in MULTI mode). */
  progressThread?: boolean;
  /** UCP's estimated_num_eps hint (the job's size). */
  estimatedEps?: number;
  /** How long the progress thread polls after serving before it sleeps, in microseconds (0, the default: never). */
  spinUs?: number;
}

export interface UcxOpened {
  /** This worker's address (every transport), for peers' epCreate. */
  address: Uint8Array;
  /** The worker's event fd (an epoll fd; readable when arm() returned true and something arrived). */
  efd: number;
  threadMode: 'single' | 'serialized' | 'multi';
  progressThread: boolean;
  /** ucp_context_print_info's text (resources: "tl/device" lines). */
  contextInfo: string;
  /**
   * Shared with native: status Int32[slots] (1 in progress, 0 done, < 0 a
   * ucs_status_t), result BigInt64[slots], completion ring Int32[slots],
   * control Int32[16] (0: ring tail, 1: inbox records, 2: failed endpoints).
   */
  control: ArrayBuffer;
  slots: number;
}

/** libucp's calls as the addon exposes them. Ids are small integers; addresses are numbers (< 2^53). */
export interface NativeUcx {
  probe(): UcxProbe;
  /**
   * Gives the progress thread this rank's doorbell (runtime/wait.ts): it rings it
   * after taking in events for the rank (wakeMessage for its completions and
   * messages, wakeHeap for the rest). False while UCX is not open; true when the
   * progress thread runs (it naps on the sleeping word while the rank polls).
   */
  doorbell(words: Int32Array, door: number, sleeping: number, wakeMessage: number, wakeHeap: number): boolean;
  /** A UCP context made and dropped (or the open one's): whether UCX_TLS leaves a usable transport. Never throws. */
  resources(): { ok: boolean; reason: string; contextInfo: string };
  open(options: UcxOpenOptions): UcxOpened;
  close(): void;
  /** Registers existing memory (ucp_mem_map with its address and length); its packed rkey. */
  memMap(view: Bytes): { id: number; rkey: Uint8Array; address: number };
  memUnmap(id: number): void;
  /** An endpoint to the worker at `address` (error mode PEER); `peer` names it in errors. */
  epCreate(address: Uint8Array, peer: string): number;
  /** ucp_ep_print_info's text (the lanes and their transports). */
  epInfo(ep: number): string;
  /** 0 while healthy, else the ucs_status_t it failed with. */
  epStatus(ep: number): number;
  /** The failure's status string, '' while healthy. */
  epFailure(ep: number): string;
  epClose(ep: number): void;
  rkeyUnpack(ep: number, rkey: Uint8Array): number;
  rkeyDestroy(rkey: number): void;
  /** Returns once `src` is reusable (local completion). */
  put(ep: number, rkey: number, remoteAddress: number, src: Bytes): void;
  /** 0: done now (src reusable); 1: src must stay unchanged until the slot completes through the ring. */
  putNbi(ep: number, rkey: number, remoteAddress: number, src: Bytes, slot: number): 0 | 1;
  /** 0: done now; 1: completes through the ring (status[slot]). */
  get(ep: number, rkey: number, remoteAddress: number, dst: Bytes, slot: number): 0 | 1;
  /** op: UCP's ADD 0, SWAP 1, CSWAP 2; size 4 or 8; the old value lands in result[slot]. */
  atomic(ep: number, rkey: number, remoteAddress: number, op: 0 | 1 | 2, size: 4 | 8, operand: number | bigint, compare: number | bigint, slot: number): 0 | 1;
  /** ep -1: the whole worker. */
  flush(ep: number, slot: number): 0 | 1;
  /**
   * A put as our own active message, acknowledged by the target (native/ucx-put.cc).
   * slot -1: returns once `src` is reusable; else 0 done, 1 `src` must stay until the slot completes.
   */
  amPut(ep: number, remoteAddress: number, src: Bytes, slot: number): 0 | 1 | undefined;
  /** 0: every amPut on the endpoint is acknowledged; 1: the slot completes when they are. Throws a refused put once. */
  flushPuts(ep: number, slot: number): 0 | 1;
  /** An active message with header (source, tag, dtype); `payload` must live until done. */
  send(ep: number, source: number, tag: number, dtype: number, payload: Bytes, slot: number): 0 | 1;
  /** Progresses the worker until idle (bounded); the number of events. */
  progress(): number;
  /** true: nothing pending, the caller may sleep on efd. */
  arm(): boolean;
  /** The message records that arrived since the last call (see transports/ucx/inbox.ts), or null. */
  takeMessages(): ArrayBuffer | null;
  /** A rendezvous message's bytes once received, else null. */
  takeLarge(id: number): ArrayBuffer | null;
  /** An ArrayBuffer of takeMessages()/takeLarge() whose payloads were delivered: detached, its memory reused for the next messages. */
  giveBack(buffer: ArrayBuffer): void;
  statusString(status: number): string;
}

/**
 * The longest external ArrayBuffer this Node.js makes (4 GiB in Node 20): one
 * mapping (a heap, a collective arena, the control segment) can be no longer.
 */
export const maxMappingBytes: number = bufferConstants.MAX_LENGTH;

const here = dirname(fileURLToPath(import.meta.url));

/** The package root, whether running from sources (vitest) or from dist/. */
export const packageRoot = [resolve(here, '..'), resolve(here, '../..')].find((p) => existsSync(join(p, 'binding.gyp'))) ?? resolve(here, '..');

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/**
 * Where the addon is looked for: $MPRUN_NATIVE_PATH; the prebuilt one the
 * package ships (prebuilds/<platform>-<arch>/, prebuildify's layout) and the
 * one `npm install` built from source (build/Release), the newer first (a
 * checkout rebuilt after its prebuild runs what it built); then build/Debug.
 */
function candidates(): string[] {
  const prebuilt = join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'mprun_native.node');
  const release = join(packageRoot, 'build/Release/mprun_native.node');
  const built = mtime(release) > mtime(prebuilt) ? [release, prebuilt] : [prebuilt, release];
  return [process.env.MPRUN_NATIVE_PATH, ...built, join(packageRoot, 'build/Debug/mprun_native.node')].filter((p): p is string => typeof p === 'string' && p.length > 0);
}

/**
 * A copy of the addon's exports, and of its groups of functions (ucx, pmix, ...), with fast
 * properties: Node-API's objects, their functions set one by one (51 in the exports, 28 in
 * ucx), are in dictionary mode, so each call through them was a dictionary lookup (V8's
 * generic LoadIC, 1.4-2% of a steady ping-pong's samples); an object literal's map lets
 * optimized code take each function as a constant.
 */
function withFastProperties<T extends object>(o: T): T {
  const copy = { ...o } as Record<string, unknown>;
  for (const [k, v] of Object.entries(copy)) if (typeof v === 'object' && v !== null && !ArrayBuffer.isView(v)) copy[k] = { ...v };
  return copy as T;
}

function load(): { binding: NativeBinding | null; error: string | null; path: string | null } {
  const paths = candidates();
  const errors: string[] = [];
  for (const path of paths) {
    if (!existsSync(path)) continue;
    try {
      // process.dlopen, which require() calls for a .node file: without Node's CommonJS loader,
      // whose createRequire and require cost 5-8 ms of every rank's start (cpu profile).
      const module = { exports: {} };
      process.dlopen(module, path);
      const binding = withFastProperties(module.exports as NativeBinding);
      binding.setErrorClass(MprunError);
      binding.setMaxMapping(maxMappingBytes);
      return { binding, error: null, path };
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message}`);
    }
  }
  const why = errors.length > 0 ? errors.join('; ') : `no build at ${paths.join(', ')}`;
  return { binding: null, error: `the native addon is not built (${why}); run \`npm install\` (needs python3, make and g++)`, path: null };
}

const loaded = load();

/** Why the addon could not be loaded, or null when it is loaded. */
export const nativeError: string | null = loaded.error;
export const nativePath: string | null = loaded.path;

/** The addon; throws a clear error when it was not built. */
export function native(): NativeBinding {
  if (loaded.binding === null) throw new MprunError('ERR_MPRUN_NATIVE', loaded.error ?? 'native addon unavailable');
  return loaded.binding;
}

export function nativeAvailable(): boolean {
  return loaded.binding !== null;
}

/** The PMIx calls of the addon (libpmix itself is loaded at their first use); throws when the addon is not built. */
export function nativePmix(): NativePmix {
  return native().pmix;
}
