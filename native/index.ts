/**
 * Typed loader of the native addon (native/*.cc, built by `npm install`).
 * The addon does system calls only; every policy lives in TypeScript.
 */
import { constants as bufferConstants } from 'node:buffer';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
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
  /** A full memory fence (mfence): orders non-temporal stores of large copies. */
  fence(): void;
  /** dst[dstIndex + i] = dst[..] <op> src[srcIndex + i] for i < count; op codes as runtime/coll/ops.ts. */
  reduce(dst: ArrayBufferView, dstIndex: number, src: ArrayBufferView, srcIndex: number, count: number, op: number): void;
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
}

/**
 * The longest external ArrayBuffer this Node.js makes (4 GiB in Node 20): one
 * mapping (a heap, a collective arena, the control segment) can be no longer.
 */
export const maxMappingBytes: number = bufferConstants.MAX_LENGTH;

const here = dirname(fileURLToPath(import.meta.url));

/** The package root, whether running from sources (vitest) or from dist/. */
export const packageRoot = [resolve(here, '..'), resolve(here, '../..')].find((p) => existsSync(join(p, 'binding.gyp'))) ?? resolve(here, '..');

function load(): { binding: NativeBinding | null; error: string | null; path: string | null } {
  const candidates = [process.env.MPRUN_NATIVE_PATH, join(packageRoot, 'build/Release/mprun_native.node'), join(packageRoot, 'build/Debug/mprun_native.node')].filter(
    (p): p is string => typeof p === 'string' && p.length > 0,
  );
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const path of candidates) {
    if (!existsSync(path)) continue;
    try {
      const binding = require(path) as NativeBinding;
      binding.setErrorClass(MprunError);
      binding.setMaxMapping(maxMappingBytes);
      return { binding, error: null, path };
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message}`);
    }
  }
  const why = errors.length > 0 ? errors.join('; ') : `no build at ${candidates.join(', ')}`;
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
