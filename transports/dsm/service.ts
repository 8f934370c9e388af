/**
 * The node agent's data service (libdsm's arbiter): ranks on other nodes
 * connect here to reach this node's ranks. It attaches the node's symmetric
 * heaps, so remote puts, gets and atomics complete while the target rank
 * computes; it relays messages into its ring to each rank (the control
 * segment's gateway participant); and it is the home of its share of every
 * shared variable's pages and of the semaphores whose names hash here.
 *
 * Every connection must prove the job secret in its first frame; a frame
 * with a bad version, type, length, offset or target closes that connection
 * (logged), never the agent.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { secretMatches } from '../../core/wire.js';
import { allocate, DTYPE_CTORS } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import { WAKE_HEAP, type ControlSegment } from '../shm/control.js';
import * as xpmem from '../xpmem/index.js';
import { NodeQueues, type OutgoingMessage } from '../shm/queue.js';
import { readOperand, writeOperand } from './atomic.js';
import { applyAtomic, isBigDtype } from '../atomics.js';
import { frame, FrameParser, HEADER_BYTES, ProtocolError, DsmFrame, typeName, writeHeader, type Header } from './frames.js';
import { homeOf, PAGE_BYTES, VarMemory, varLayout } from './layout.js';

export interface ServiceOptions {
  ctrl: ControlSegment;
  /** World rank of each local rank. */
  ranks: readonly number[];
  nodeIndex: number;
  nnodes: number;
  secret: string;
  log(message: string): void;
}

interface RelayItem extends OutgoingMessage {
  /** The world rank that sent it. */
  origin: number;
}

interface SharedVar {
  memory: VarMemory;
  attachment: xpmem.Attachment;
}

interface Semaphore {
  count: number;
  waiters: Array<() => void>;
}

/** Semaphore operations (SEM aux). */
export const SEM_CREATE = 1;
export const SEM_WAIT = 2;
export const SEM_POST = 3;

/** How often a relay blocked on a full ring retries. */
const RELAY_RETRY_MS = 1;

export class DsmService {
  readonly #options: ServiceOptions;
  readonly #localOf = new Map<number, number>();
  readonly #heaps: Array<{ buffer: ArrayBuffer; attachment: xpmem.Attachment } | null>;
  readonly #relay: NodeQueues;
  readonly #outbox: RelayItem[][];
  #retry: NodeJS.Timeout | null = null;
  readonly #vars = new Map<number, SharedVar>();
  readonly #sems = new Map<string, Semaphore>();
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;

  constructor(o: ServiceOptions) {
    this.#options = o;
    o.ranks.forEach((w, l) => this.#localOf.set(w, l));
    this.#heaps = o.ranks.map(() => null);
    this.#relay = new NodeQueues(o.ctrl, o.ctrl.gateway);
    this.#outbox = o.ranks.map(() => []);
  }

  /** Listens on a TCP host (port chosen by the kernel) or a Unix socket path; returns the address for ranks. */
  listen(where: { host: string } | { path: string }): Promise<string> {
    const server = createServer((s) => this.#serve(s));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        const a = server.address();
        if (a === null || typeof a === 'string') resolve(typeof a === 'string' ? a : (where as { path: string }).path);
        else resolve(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
      };
      if ('path' in where) server.listen(where.path, done);
      else server.listen(0, where.host, done);
    });
  }

  close(): void {
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#server?.close();
    for (const s of this.#sockets) s.destroy();
    for (const h of this.#heaps) h?.attachment.detach();
    for (const v of this.#vars.values()) v.attachment.detach();
  }

  #serve(socket: Socket): void {
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    let peer = -1;
    /** The typed array a MSG frame's payload is landing in. */
    let landing: TypedArray | null = null;
    const parser = new FrameParser({
      begin: (h) => {
        const payload = h.bytes - HEADER_BYTES;
        if (peer < 0) {
          if (h.type !== DsmFrame.AUTH) throw new ProtocolError(`first frame was ${typeName(h.type)}, not AUTH`);
          if (payload > 1024) throw new ProtocolError('oversized AUTH frame');
          return null;
        }
        switch (h.type) {
          case DsmFrame.PUT:
            return this.#heapRange(h.target, h.offset, payload, 'PUT');
          case DsmFrame.GET:
            this.#heapRange(h.target, h.offset, h.length, 'GET');
            return expectPayload(h, 0);
          case DsmFrame.AMO:
          case DsmFrame.VAR_AMO:
            return expectPayload(h, 16);
          case DsmFrame.FLUSH:
            return expectPayload(h, 0);
          case DsmFrame.MSG: {
            this.#local(h.target, 'MSG');
            const dtype = h.aux;
            if (dtype < 0 || dtype > DTYPE_CTORS.length + 2) throw new ProtocolError(`MSG of unknown type code ${dtype}`);
            landing = allocate(dtype, payload);
            if (payload % landing.BYTES_PER_ELEMENT !== 0) throw new ProtocolError(`MSG of ${payload} bytes is not whole elements`);
            return new Uint8Array(landing.buffer, landing.byteOffset, payload);
          }
          case DsmFrame.VAR_REGISTER:
          case DsmFrame.SEM:
            if (payload > 4096) throw new ProtocolError(`oversized ${typeName(h.type)} frame`);
            return null;
          case DsmFrame.VAR_WRITE:
          case DsmFrame.VAR_FETCH:
            this.#var(h.target);
            return null;
          default:
            throw new ProtocolError(`unexpected ${typeName(h.type)} frame`);
        }
      },
      end: (h, payload) => {
        if (peer < 0) {
          if (!secretMatches(this.#options.secret, Buffer.from(payload).toString('utf8'))) throw new ProtocolError('wrong job secret');
          peer = h.target;
          socket.write(frame(DsmFrame.AUTH_OK, { id: h.id }));
          return;
        }
        this.#handle(socket, h, payload, landing);
        landing = null;
      },
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        parser.push(chunk);
      } catch (e) {
        this.#options.log(`closed a data connection from ${socket.remoteAddress ?? 'a local socket'}${peer >= 0 ? ` (rank ${peer})` : ''}: ${(e as Error).message}`);
        socket.destroy();
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.#sockets.delete(socket));
  }

  #local(worldRank: number, what: string): number {
    const l = this.#localOf.get(worldRank);
    if (l === undefined) throw new ProtocolError(`${what} for rank ${worldRank}, which is not on this node`);
    return l;
  }

  #heap(l: number): ArrayBuffer {
    let h = this.#heaps[l];
    if (h === null || h === undefined) {
      const pub = this.#options.ctrl.heapOf(l);
      if (pub === null) throw new ProtocolError(`local rank ${l} has not published its heap yet`);
      const attachment = xpmem.attachWhole(pub.segid, pub.bytes);
      const buffer = xpmem.mappedBuffer(attachment);
      if (buffer === null) throw new ProtocolError('this node cannot map its ranks\' heaps (XPMEM backend cma); set MPRUN_XPMEM_BACKEND=shm');
      h = { buffer, attachment };
      this.#heaps[l] = h;
    }
    return h.buffer;
  }

  /** The bytes [offset, offset + length) of a local rank's heap, after checking they exist. */
  #heapRange(worldRank: number, offset: number, length: number, what: string): Uint8Array {
    const heap = this.#heap(this.#local(worldRank, what));
    if (offset + length > heap.byteLength) throw new ProtocolError(`${what} of [${offset}, ${offset + length}) is outside rank ${worldRank}'s heap of ${heap.byteLength} bytes`);
    return new Uint8Array(heap, offset, length);
  }

  #var(id: number): SharedVar {
    const v = this.#vars.get(id);
    if (v === undefined) throw new ProtocolError(`no shared variable ${id} on this node`);
    return v;
  }

  #handle(socket: Socket, h: Header, payload: Uint8Array, landing: TypedArray | null): void {
    const o = this.#options;
    switch (h.type) {
      case DsmFrame.PUT:
        o.ctrl.ring(this.#local(h.target, 'PUT'), WAKE_HEAP);
        return;
      case DsmFrame.GET: {
        const bytes = this.#heapRange(h.target, h.offset, h.length, 'GET');
        const head = Buffer.allocUnsafe(HEADER_BYTES);
        writeHeader(head, 0, DsmFrame.GET_REPLY, h.length, { id: h.id });
        socket.cork();
        socket.write(head);
        socket.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        socket.uncork();
        return;
      }
      case DsmFrame.AMO: {
        const l = this.#local(h.target, 'AMO');
        const old = this.#atomic(this.#heap(l), h, payload, 0);
        o.ctrl.ring(l, WAKE_HEAP);
        this.#reply(socket, h.id, old);
        return;
      }
      case DsmFrame.FLUSH:
        socket.write(frame(DsmFrame.FLUSH_REPLY, { id: h.id }));
        return;
      case DsmFrame.MSG: {
        const l = this.#local(h.target, 'MSG');
        this.#outbox[l]!.push({ origin: h.id, tag: h.arg, dtype: h.aux, payload: landing!, offset: 0 });
        this.#pump();
        return;
      }
      case DsmFrame.VAR_REGISTER: {
        const { segid, bytes } = JSON.parse(Buffer.from(payload).toString('utf8')) as { segid: string; bytes: number };
        if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new ProtocolError('VAR_REGISTER without a size');
        if (!this.#vars.has(h.target)) {
          const att = xpmem.attachWhole(segid, varLayout(bytes).total);
          const buffer = xpmem.mappedBuffer(att);
          if (buffer === null) throw new ProtocolError('cannot map a shared variable here (XPMEM backend cma)');
          this.#vars.set(h.target, { memory: new VarMemory(buffer, bytes), attachment: att });
        }
        socket.write(frame(DsmFrame.OK, { id: h.id }));
        return;
      }
      case DsmFrame.VAR_WRITE:
        this.#applyWrites(this.#var(h.target).memory, payload);
        socket.write(frame(DsmFrame.OK, { id: h.id }));
        return;
      case DsmFrame.VAR_FETCH:
        socket.write(this.#pages(this.#var(h.target).memory, h.id, payload));
        return;
      case DsmFrame.VAR_AMO: {
        const m = this.#var(h.target).memory;
        const page = Math.floor(h.offset / PAGE_BYTES);
        if (page >= m.layout.pages || homeOf(page, o.nnodes) !== o.nodeIndex) throw new ProtocolError(`VAR_AMO on page ${page}, not homed here`);
        const old = this.#atomic(m.data.buffer as ArrayBuffer, h, payload, m.data.byteOffset);
        m.bump(page);
        this.#reply(socket, h.id, old);
        return;
      }
      case DsmFrame.SEM:
        this.#semaphore(socket, h, Buffer.from(payload).toString('utf8'));
        return;
    }
  }

  #atomic(buffer: ArrayBuffer, h: Header, payload: Uint8Array, base: number): number | bigint {
    const op = h.aux & 0xff;
    const dtype = h.aux >> 8;
    const Ctor = DTYPE_CTORS[dtype - 1];
    if (Ctor === undefined) throw new ProtocolError(`atomic on unknown type code ${dtype}`);
    const at = base + h.offset;
    if (at + Ctor.BYTES_PER_ELEMENT > buffer.byteLength || at % Ctor.BYTES_PER_ELEMENT !== 0) throw new ProtocolError(`atomic at byte ${h.offset} is outside or misaligned`);
    const big = isBigDtype(dtype);
    const unsigned = Ctor === BigUint64Array;
    try {
      return applyAtomic(buffer, dtype, at, op, readOperand(payload, 0, big, unsigned), readOperand(payload, 8, big, unsigned));
    } catch (e) {
      throw new ProtocolError((e as Error).message);
    }
  }

  #reply(socket: Socket, id: number, old: number | bigint): void {
    const out = Buffer.allocUnsafe(HEADER_BYTES + 8);
    writeHeader(out, 0, DsmFrame.AMO_REPLY, 8, { id });
    writeOperand(out, HEADER_BYTES, old);
    socket.write(out);
  }

  /** Relays queued messages into the rings to their ranks; retries shortly while a ring is full. */
  #pump(): void {
    const q = this.#relay;
    let stuck = false;
    this.#outbox.forEach((box, l) => {
      while (box.length > 0) {
        const m = box[0]!;
        if (!q.tryPost(l, m, q.maxEager, m.origin)) break;
        box.shift();
      }
      if (box.length > 0) stuck = true;
    });
    if (stuck && this.#retry === null) {
      this.#retry = setTimeout(() => {
        this.#retry = null;
        this.#pump();
      }, RELAY_RETRY_MS);
    }
  }

  /** Applies runs [u32 offset][u32 length][bytes, padded to 4] to this home's pages (and their twins). */
  #applyWrites(m: VarMemory, runs: Uint8Array): void {
    const dv = new DataView(runs.buffer, runs.byteOffset, runs.byteLength);
    const { nodeIndex, nnodes } = this.#options;
    let at = 0;
    while (at < runs.byteLength) {
      if (at + 8 > runs.byteLength) throw new ProtocolError('truncated VAR_WRITE run');
      const off = dv.getUint32(at, true);
      const len = dv.getUint32(at + 4, true);
      at += 8;
      if (at + len > runs.byteLength || off + len > m.data.byteLength) throw new ProtocolError(`VAR_WRITE run [${off}, ${off + len}) is out of bounds`);
      const first = Math.floor(off / PAGE_BYTES);
      const last = Math.floor((off + Math.max(len, 1) - 1) / PAGE_BYTES);
      for (let p = first; p <= last; p++) if (homeOf(p, nnodes) !== nodeIndex) throw new ProtocolError(`VAR_WRITE to page ${p}, which is not homed here`);
      const bytes = runs.subarray(at, at + len);
      m.data.set(bytes, off);
      m.twin.set(bytes, off);
      for (let p = first; p <= last; p++) m.bump(p);
      at += (len + 3) & ~3;
    }
  }

  /** VAR_PAGES: every page asked for whose version is not the one the asker has. */
  #pages(m: VarMemory, id: number, asked: Uint8Array): Buffer {
    if (asked.byteLength % 8 !== 0) throw new ProtocolError('VAR_FETCH of a partial entry');
    const dv = new DataView(asked.buffer, asked.byteOffset, asked.byteLength);
    const { nodeIndex, nnodes } = this.#options;
    const send: Array<[number, number]> = [];
    for (let at = 0; at < asked.byteLength; at += 8) {
      const p = dv.getUint32(at, true);
      if (p >= m.layout.pages || homeOf(p, nnodes) !== nodeIndex) throw new ProtocolError(`VAR_FETCH of page ${p}, not homed here`);
      const v = Atomics.load(m.versions, p);
      if (v !== dv.getUint32(at + 4, true)) send.push([p, v]);
    }
    const entry = 8 + PAGE_BYTES;
    const out = Buffer.allocUnsafe(HEADER_BYTES + entry * send.length);
    writeHeader(out, 0, DsmFrame.VAR_PAGES, entry * send.length, { id });
    send.forEach(([p, v], i) => {
      const at = HEADER_BYTES + i * entry;
      out.writeUInt32LE(p, at);
      out.writeUInt32LE(v, at + 4);
      out.set(m.data.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES), at + 8);
    });
    return out;
  }

  #semaphore(socket: Socket, h: Header, name: string): void {
    const ok = (): void => void socket.write(frame(DsmFrame.OK, { id: h.id }));
    let s = this.#sems.get(name);
    if (h.aux === SEM_CREATE) {
      if (s === undefined) this.#sems.set(name, { count: h.arg, waiters: [] });
      ok();
      return;
    }
    if (s === undefined) throw new ProtocolError(`no semaphore '${name}' here`);
    if (h.aux === SEM_WAIT) {
      if (s.count > 0) {
        s.count--;
        ok();
      } else s.waiters.push(ok);
    } else if (h.aux === SEM_POST) {
      const next = s.waiters.shift();
      if (next !== undefined) next();
      else s.count++;
      ok();
    } else throw new ProtocolError(`unknown semaphore operation ${h.aux}`);
  }
}

function expectPayload(h: Header, bytes: number): null {
  if (h.bytes - HEADER_BYTES !== bytes) throw new ProtocolError(`${typeName(h.type)} with ${h.bytes - HEADER_BYTES} bytes of payload, expected ${bytes}`);
  return null;
}
