/**
 * The agent as the home of its share of every shared variable's pages (page
 * p lives on node p mod nnodes; layout.ts). A node's first rank registers
 * each variable's segment, which the agent maps (VAR_REGISTER); other nodes'
 * ranks then write their diffs into the home's pages (VAR_WRITE), fetch the
 * pages whose version moved (VAR_FETCH) and run atomics on the home's copy
 * (VAR_AMO). Every change bumps the page's version.
 */
import * as xpmem from '../xpmem/index.js';
import type { AmoServer } from './amo.js';
import { DsmFrame, HEADER_BYTES, RequestRefused, writeHeader, type Header } from './frames.js';
import { homeOf, PAGE_BYTES, VarMemory, varLayout } from './layout.js';
import { MAX_FETCH_PAGES, pagesPayloadBytes, parseFetch, parseRegister, parseRuns, writePages, type PageCopy, type WriteRun } from './page-wire.js';
import { applyRemoteAtomic } from './remote-atomic.js';

/** Which node this is, of how many: which pages are homed here. */
export interface HomeOf {
  nodeIndex: number;
  nnodes: number;
}

function checkHomed(m: VarMemory, page: number, home: HomeOf, what: string): void {
  if (page >= m.layout.pages || homeOf(page, home.nnodes) !== home.nodeIndex) throw new RequestRefused(`${what} page ${page}, not homed here`);
}

/**
 * Applies VAR_WRITE runs to the home's pages and their twins (so that the
 * home node's next release does not take them for its own writes) and bumps
 * each page written. Every run is checked
 * before any is applied, so a refused write changes nothing.
 */
export function applyWrites(m: VarMemory, runs: readonly WriteRun[], home: HomeOf): void {
  for (const [off, bytes] of runs) {
    const len = bytes.byteLength;
    if (off + len > m.data.byteLength) throw new RequestRefused(`VAR_WRITE run [${off}, ${off + len}) is out of bounds`);
    const first = Math.floor(off / PAGE_BYTES);
    const last = Math.floor((off + Math.max(len, 1) - 1) / PAGE_BYTES);
    for (let p = first; p <= last; p++) if (homeOf(p, home.nnodes) !== home.nodeIndex) throw new RequestRefused(`VAR_WRITE to page ${p}, which is not homed here`);
  }
  for (const [off, bytes] of runs) {
    m.data.set(bytes, off);
    m.twin.set(bytes, off);
    const first = Math.floor(off / PAGE_BYTES);
    const last = Math.floor((off + Math.max(bytes.byteLength, 1) - 1) / PAGE_BYTES);
    for (let p = first; p <= last; p++) m.bump(p);
  }
}

/** Every page asked for whose version is not the one the asker has: the home's copy and version. */
export function changedPages(m: VarMemory, asked: ReadonlyArray<[page: number, version: number]>, home: HomeOf): PageCopy[] {
  for (const [p] of asked) checkHomed(m, p, home, 'VAR_FETCH of');
  const out: PageCopy[] = [];
  for (const [p, has] of asked) {
    const version = Atomics.load(m.versions, p);
    if (version !== has) out.push({ page: p, version, bytes: m.data.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES) });
  }
  return out;
}

interface HomedVariable {
  memory: VarMemory;
  /** The variable's length in bytes. */
  bytes: number;
  detach(): void;
}

export class PageHomes {
  readonly #home: HomeOf;
  readonly #vars = new Map<number, HomedVariable>();
  /** The native serving thread of atomics (amo.ts), once the service started one. */
  #atomics: AmoServer | null = null;

  constructor(home: HomeOf) {
    this.#home = home;
  }

  /** The variable `id`, registered on this node. */
  variable(id: number): VarMemory {
    const v = this.#vars.get(id);
    if (v === undefined) throw new RequestRefused(`no shared variable ${id} on this node`);
    return v.memory;
  }

  /** VAR_REGISTER: maps the node's segment of variable `id` (once; a second registration is a no-op). */
  register(id: number, payload: Uint8Array): void {
    const { segid, bytes } = parseRegister(payload);
    if (this.#vars.has(id)) return;
    const attachment = xpmem.attachWhole(segid, varLayout(bytes).total);
    const buffer = xpmem.mappedBuffer(attachment);
    if (buffer === null) throw new RequestRefused('cannot map a shared variable here (XPMEM backend cma)');
    const memory = new VarMemory(buffer, bytes);
    this.#vars.set(id, { memory, bytes, detach: () => attachment.detach() });
    this.#atomics?.register(id, memory, bytes);
  }

  /** Serves the atomics on every variable, registered and to come, on `server` too. */
  serveAtomics(server: AmoServer): void {
    this.#atomics = server;
    for (const [id, v] of this.#vars) server.register(id, v.memory, v.bytes);
  }

  /** VAR_WRITE. */
  write(id: number, payload: Uint8Array): void {
    applyWrites(this.variable(id), parseRuns(payload), this.#home);
  }

  /** VAR_FETCH of request `h`: the VAR_PAGES reply frame. */
  fetch(h: Header, asked: Uint8Array): Buffer {
    const copies = changedPages(this.variable(h.target), parseFetch(asked), this.#home);
    // A reply over a frame's payload would fail the asking rank's whole link: this request only.
    if (copies.length > MAX_FETCH_PAGES) throw new RequestRefused(`VAR_FETCH of ${copies.length} changed pages: at most ${MAX_FETCH_PAGES} a request`);
    const payloadBytes = pagesPayloadBytes(copies.length);
    const out = Buffer.allocUnsafe(HEADER_BYTES + payloadBytes);
    writeHeader(out, 0, DsmFrame.VAR_PAGES, payloadBytes, { id: h.id });
    writePages(out, HEADER_BYTES, copies);
    return out;
  }

  /** VAR_AMO: an atomic on the home's copy of an element; its old value. */
  atomic(h: Header, operands: Uint8Array): number | bigint {
    const m = this.variable(h.target);
    const page = Math.floor(h.offset / PAGE_BYTES);
    checkHomed(m, page, this.#home, 'VAR_AMO on');
    const old = applyRemoteAtomic(m.data.buffer as ArrayBuffer, m.data.byteOffset, h, operands);
    m.bump(page);
    return old;
  }

  close(): void {
    for (const id of this.#vars.keys()) this.#atomics?.unregister(id);
    for (const v of this.#vars.values()) v.detach();
  }
}
