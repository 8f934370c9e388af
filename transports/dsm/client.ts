/**
 * A rank's connections to node agents: one per node, made at init (to its
 * own node's agent on first use). Puts and messages are written at once (the
 * data copied into the frame, so the caller may reuse it); gets, atomics,
 * flushes and shared-variable requests wait for the agent's reply, which is
 * read from the socket by the event loop. One connection per node keeps every
 * operation from this rank to that node in order, so a flush answered means
 * every earlier put there has landed.
 *
 * Writes do not go through the socket's stream: that one is flushed only by
 * the event loop, and a rank blocked in a synchronous collective (split,
 * alloc) may be waiting for the very data a peer's stream still holds. So a
 * link writes its frames to the socket's descriptor itself, without blocking,
 * and keeps what the kernel did not take; every wait of the rank pumps it
 * (pumpAll), and so does a check scheduled on the event loop.
 */
import { writeSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { MprunError } from '../../runtime/errors.js';
import { parseTcpAddress } from '../../launcher/wire.js';
import { readOperand, writeOperand } from './atomic.js';
import { frame, FrameParser, HEADER_BYTES, MAX_PAYLOAD, ProtocolError, DsmFrame, typeName, writeHeader, type Header } from './frames.js';

interface Pending {
  resolve(value: unknown): void;
  reject(e: Error): void;
  /** Where a GET_REPLY's bytes land. */
  into: Uint8Array | null;
  /** How an AMO_REPLY's operand reads. */
  big: boolean;
  unsigned: boolean;
}

/** Links with output the kernel has not taken yet. */
const backlogged = new Set<AgentLink>();

/** Pushes every link's queued output as far as the kernel takes it now. */
export function pumpAll(): void {
  if (backlogged.size === 0) return;
  for (const l of backlogged) l.pump();
}

/** Whether some link still has output queued. */
export function outputQueued(): boolean {
  return backlogged.size > 0;
}

/** One authenticated connection to a node agent. */
export class AgentLink {
  readonly node: number;
  readonly #socket: Socket;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  /** Puts written since the last flush. */
  unflushed = 0;
  #closed: Error | null = null;
  /** The socket's descriptor once authenticated (writes go to it directly), and what it has not taken. */
  #fd = -1;
  readonly #out: Buffer[] = [];
  #pumpScheduled = false;

  private constructor(node: number, socket: Socket) {
    this.node = node;
    this.#socket = socket;
  }

  /** Connects and authenticates as `rank`; resolves once the agent accepted. */
  static open(node: number, nodeName: string, address: string, secret: string, rank: number): Promise<AgentLink> {
    const tcp = parseTcpAddress(address);
    const socket = tcp === null ? connect(address) : connect(tcp);
    socket.setNoDelay(true);
    const link = new AgentLink(node, socket);
    const parser = new FrameParser({ begin: (h) => link.#begin(h), end: (h, p) => link.#end(h, p) });
    socket.on('data', (chunk: Buffer) => {
      try {
        parser.push(chunk);
      } catch (e) {
        link.#fail(new MprunError('ERR_MPRUN_PROTOCOL', `bad frame from the agent of node ${nodeName}: ${(e as Error).message}`));
        socket.destroy();
      }
    });
    socket.on('error', (e) => link.#fail(new MprunError('ERR_MPRUN_UNREACHABLE', `connection to the agent of node ${nodeName} (${address}): ${e.message}`)));
    socket.on('close', () => link.#fail(new MprunError('ERR_MPRUN_UNREACHABLE', `the agent of node ${nodeName} closed the connection`)));
    const auth = Buffer.from(secret, 'utf8');
    const ready = link.#request(DsmFrame.AUTH, { target: rank }, auth);
    return ready.then(() => {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (typeof fd !== 'number' || fd < 0) throw new MprunError('ERR_MPRUN_SYSTEM', 'cannot reach the descriptor of a connection to an agent');
      link.#fd = fd;
      link.#refresh();
      return link;
    });
  }

  #begin(h: Header): Uint8Array | null {
    const p = this.#pending.get(h.id);
    if (p === undefined) throw new ProtocolError(`a ${typeName(h.type)} for no request (${h.id})`);
    if (h.type === DsmFrame.GET_REPLY && p.into !== null) {
      if (h.bytes - HEADER_BYTES !== p.into.byteLength) throw new ProtocolError(`GET_REPLY of ${h.bytes - HEADER_BYTES} bytes for ${p.into.byteLength}`);
      return p.into;
    }
    return null;
  }

  #end(h: Header, payload: Uint8Array): void {
    const p = this.#pending.get(h.id)!;
    this.#pending.delete(h.id);
    this.#refresh();
    switch (h.type) {
      case DsmFrame.AMO_REPLY:
        p.resolve(readOperand(payload, 0, p.big, p.unsigned));
        break;
      case DsmFrame.ERROR:
        p.reject(new MprunError('ERR_MPRUN_PROTOCOL', Buffer.from(payload).toString('utf8')));
        break;
      default:
        p.resolve(payload);
    }
  }

  #fail(e: Error): void {
    if (this.#closed !== null) return;
    this.#closed = e;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  /** The socket keeps the process alive only while a reply is awaited. */
  #refresh(): void {
    if (this.#pending.size > 0) this.#socket.ref();
    else this.#socket.unref();
  }

  get waiting(): boolean {
    return this.#pending.size > 0;
  }

  #check(): void {
    if (this.#closed !== null) throw this.#closed;
  }

  /** Writes bytes now if the kernel takes them, else queues them (in order) for pump(). */
  #write(buf: Buffer): void {
    if (this.#fd < 0) {
      this.#socket.write(buf); // authenticating: nothing else is written yet
      return;
    }
    if (this.#out.length === 0) {
      const n = this.#tryWrite(buf);
      if (n === buf.byteLength) return;
      buf = buf.subarray(n);
    }
    this.#out.push(buf);
    backlogged.add(this);
    this.#schedulePump();
  }

  #tryWrite(buf: Buffer): number {
    try {
      return writeSync(this.#fd, buf, 0, buf.byteLength);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return 0;
      this.#fail(new MprunError('ERR_MPRUN_UNREACHABLE', `writing to the agent of node ${this.node}: ${(e as Error).message}`));
      this.#out.length = 0;
      backlogged.delete(this);
      return buf.byteLength;
    }
  }

  /** Writes queued output until the kernel stops taking it. */
  pump(): void {
    while (this.#out.length > 0) {
      const buf = this.#out[0]!;
      const n = this.#tryWrite(buf);
      if (n < buf.byteLength) {
        this.#out[0] = buf.subarray(n);
        return;
      }
      this.#out.shift();
    }
    backlogged.delete(this);
  }

  /** While output is queued and the rank is not waiting (a wait pumps), the event loop pumps. */
  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.pump();
      if (this.#out.length > 0) this.#schedulePump();
    });
  }

  /** Writes a frame that expects no reply. */
  post(type: number, h: Partial<Omit<Header, 'bytes' | 'type'>>, payload?: Uint8Array): void {
    this.#check();
    this.#write(frame(type, h, payload));
  }

  /** Writes a frame and resolves with its reply's payload (or value). */
  #request(type: number, h: Partial<Omit<Header, 'bytes' | 'type'>>, payload?: Uint8Array, into: Uint8Array | null = null, big = false, unsigned = false): Promise<unknown> {
    if (this.#closed !== null) return Promise.reject(this.#closed);
    const id = this.#nextId;
    this.#nextId = id === 0xffffffff ? 1 : id + 1;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, into, big, unsigned });
      this.#refresh();
      this.#write(frame(type, { ...h, id }, payload));
    });
  }

  request(type: number, h: Partial<Omit<Header, 'bytes' | 'type' | 'id'>>, payload?: Uint8Array): Promise<Uint8Array> {
    return this.#request(type, h, payload) as Promise<Uint8Array>;
  }

  /** Puts `bytes` at `offset` of `rank`'s heap (split into frames of at most MAX_PAYLOAD). */
  put(rank: number, offset: number, bytes: Uint8Array): void {
    this.#check();
    for (let at = 0; at < bytes.byteLength || at === 0; at += MAX_PAYLOAD) {
      const n = Math.min(MAX_PAYLOAD, bytes.byteLength - at);
      const out = Buffer.allocUnsafe(HEADER_BYTES + n);
      writeHeader(out, 0, DsmFrame.PUT, n, { target: rank, offset: offset + at });
      out.set(bytes.subarray(at, at + n), HEADER_BYTES);
      this.#write(out);
      if (n === 0) break;
    }
    this.unflushed++;
  }

  /** Reads `into.byteLength` bytes at `offset` of `rank`'s heap straight into `into`. */
  async get(rank: number, offset: number, into: Uint8Array): Promise<void> {
    const parts: Array<Promise<unknown>> = [];
    for (let at = 0; at < into.byteLength || at === 0; at += MAX_PAYLOAD) {
      const n = Math.min(MAX_PAYLOAD, into.byteLength - at);
      parts.push(this.#request(DsmFrame.GET, { target: rank, offset: offset + at, length: n }, undefined, into.subarray(at, at + n)));
      if (n === 0) break;
    }
    await Promise.all(parts);
  }

  /** An atomic on an element of type `dtype` (8 bytes of each operand on the wire). */
  atomic(type: typeof DsmFrame.AMO | typeof DsmFrame.VAR_AMO, target: number, byteOffset: number, op: number, dtype: number, a: number | bigint, b: number | bigint, big: boolean, unsigned: boolean): Promise<number | bigint> {
    const operands = Buffer.allocUnsafe(16);
    writeOperand(operands, 0, a);
    writeOperand(operands, 8, b);
    return this.#request(type, { target, offset: byteOffset, aux: op | (dtype << 8) }, operands, null, big, unsigned) as Promise<number | bigint>;
  }

  /** Resolves when every put written before it has landed. */
  async flush(): Promise<void> {
    if (this.unflushed === 0) return;
    this.unflushed = 0;
    await this.#request(DsmFrame.FLUSH, {});
  }

  close(): void {
    this.#closed ??= new MprunError('ERR_MPRUN_FINALIZED', 'the world is finalized');
    backlogged.delete(this);
    this.#socket.destroy();
  }
}
