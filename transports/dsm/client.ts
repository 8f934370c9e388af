/**
 * A rank's connections to node agents: one per node, made at init (to its
 * own node's agent on first use). Puts and messages are written at once,
 * header and payload in one writev from the caller's bytes (what the kernel
 * does not take is copied, so the caller may reuse them, except a message's
 * stable payload, which its send waits to see written); gets, atomics,
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
import { connect, type Socket } from 'node:net';
import { AmoChannel, heapTarget, nativeAtomicsWanted } from './amo.js';
import { connectNow } from './connect-now.js';
import { MprunError } from '../../core/errors.js';
import { native } from '../../native/index.js';
import { parseTcpAddress, socketFd } from '../../core/wire.js';
import { RequestChannel, type ReplyRules } from '../../core/channel.js';
import { readOperand, writeOperand } from './atomic.js';
import { DSM_PROTOCOL, frame, FrameParser, HEADER_BYTES, MAX_PAYLOAD, ProtocolError, DsmFrame, writeHeader, type Header } from './frames.js';

/** How an AMO_REPLY's operand reads (a request's context): bit 0 a 64-bit type, bit 1 unsigned. */
const BIG = 1;
const UNSIGNED = 2;

/** The agent's replies: GET_REPLY lands in the caller's array, AMO_REPLY is an operand, ERROR a failure. */
const REPLIES: ReplyRules<number, unknown> = {
  land(h, into) {
    if (h.type !== DsmFrame.GET_REPLY || into === null) return null;
    if (h.bytes - HEADER_BYTES !== into.byteLength) throw new ProtocolError(`GET_REPLY of ${h.bytes - HEADER_BYTES} bytes for ${into.byteLength}`);
    return into;
  },
  settle(h, payload, operand) {
    if (h.type === DsmFrame.AUTH_OK) return h.arg;
    if (h.type === DsmFrame.AMO_REPLY) return readOperand(payload, 0, (operand & BIG) !== 0, (operand & UNSIGNED) !== 0);
    if (h.type === DsmFrame.ERROR) throw new MprunError('ERR_MPRUN_PROTOCOL', Buffer.from(payload).toString('utf8'));
    return payload;
  },
};

/** A frame's header alone, for a payload written after it. */
function header(type: number, payloadBytes: number, h: Partial<Omit<Header, 'bytes' | 'type'>>): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES);
  writeHeader(out, 0, type, payloadBytes, h);
  return out;
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
  /** Requests awaiting the agent's replies; its error is the link's, sticky. */
  readonly #channel: RequestChannel<number, unknown>;
  /** Puts written since the last flush. */
  unflushed = 0;
  /** The socket's descriptor once authenticated (writes go to it directly), and what it has not taken. */
  #fd = -1;
  readonly #out: Uint8Array[] = [];
  /** Bytes ever queued in #out, and of those, written: marks for stable writes (see #write). */
  #queuedBytes = 0;
  #writtenBytes = 0;
  #pumpScheduled = false;
  readonly #nodeName: string;
  readonly #host: string | null;
  readonly #secret: string;
  /** The port of the agent's native thread for atomics and gets (AUTH_OK's arg; 0: none), and the connection to it once used. */
  #amoPort = 0;
  #amo: AmoChannel | null = null;
  /**
   * Ranks whose heap the agent has attached (so its native thread serves it):
   * their puts go to that thread, in order with its gets and atomics. A rank
   * joins once a flush answered its puts on this link (the agent attached it to
   * take them), so its puts never take both ways unflushed.
   */
  readonly #served = new Set<number>();
  /** Puts on this link not yet answered by a flush, by target rank. */
  readonly #linkPuts = new Map<number, number>();
  /** Puts written to the native thread since its last flush. */
  #nativePuts = 0;

  private constructor(node: number, nodeName: string, address: string, secret: string, socket: Socket) {
    this.node = node;
    this.#nodeName = nodeName;
    this.#host = parseTcpAddress(address)?.host ?? null;
    this.#secret = secret;
    this.#socket = socket;
    this.#channel = new RequestChannel(DSM_PROTOCOL, (type, h, payload) => void this.#write([frame(type, h, payload)], true), REPLIES);
  }

  /** Connects and authenticates as `rank`; resolves once the agent accepted. */
  static open(node: number, nodeName: string, address: string, secret: string, rank: number): Promise<AgentLink> {
    const tcp = parseTcpAddress(address);
    const socket = tcp === null ? connect(address) : connect(tcp);
    socket.setNoDelay(true);
    const link = AgentLink.#attach(node, nodeName, address, secret, socket);
    const ready = link.#authenticate(secret, rank);
    return ready.then(() => {
      const fd = socketFd(socket);
      if (fd === null) throw new MprunError('ERR_MPRUN_SYSTEM', 'cannot reach the descriptor of a connection to an agent');
      link.#fd = fd;
      link.#refresh();
      return link;
    });
  }

  /**
   * The same, usable at once by a thread that cannot wait for the event loop
   * (a synchronous collective meeting a node for the first time): connect()
   * is issued now (connect-now.ts) and every frame, the authentication first,
   * goes to the descriptor as the kernel takes it; the agent's reply to the
   * authentication arrives later like any reply. Null where this Node cannot.
   */
  static openNow(node: number, nodeName: string, address: string, secret: string, rank: number): AgentLink | null {
    const tcp = parseTcpAddress(address);
    const made = tcp === null ? null : connectNow(tcp.host, tcp.port);
    if (made === null) return null;
    made.socket.setNoDelay(true);
    const link = AgentLink.#attach(node, nodeName, address, secret, made.socket);
    link.#fd = made.fd;
    // A refused authentication closes the connection: the link's error, sticky, fails its next operation.
    link.#authenticate(secret, rank).catch(() => undefined);
    return link;
  }

  static #attach(node: number, nodeName: string, address: string, secret: string, socket: Socket): AgentLink {
    const link = new AgentLink(node, nodeName, address, secret, socket);
    const parser = new FrameParser({
      begin: (h) => link.#channel.begin(h),
      end: (h, p) => {
        link.#channel.end(h, p);
        link.#refresh();
      },
    });
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
    return link;
  }

  #authenticate(secret: string, rank: number): Promise<unknown> {
    return this.#request(DsmFrame.AUTH, { target: rank }, Buffer.from(secret, 'utf8')).then((port) => {
      this.#amoPort = port as number;
    });
  }

  #fail(e: Error): void {
    this.#channel.fail(e);
  }

  /** The socket keeps the process alive only while a reply is awaited. */
  #refresh(): void {
    if (this.#channel.waiting > 0) this.#socket.ref();
    else this.#socket.unref();
  }

  get waiting(): boolean {
    return this.#channel.waiting > 0;
  }

  #check(): void {
    if (this.#channel.error !== null) throw this.#channel.error;
  }

  /**
   * Writes `chunks` now as far as the kernel takes them and queues the rest, in
   * order, for pump(). With `stable` the caller keeps them unchanged until
   * written (a message's payload: no copy of it is made), and gets the mark
   * that written() then reaches; else what is left is copied, and the chunks
   * may be reused on return (null).
   */
  #write(chunks: Uint8Array[], stable = false): number | null {
    if (this.#fd < 0) {
      // authenticating: nothing else is written yet (the stream keeps what it is given: copies)
      for (const c of chunks) this.#socket.write(Uint8Array.prototype.slice.call(c));
      return null;
    }
    let n = this.#out.length === 0 ? this.#tryWrite(chunks) : 0;
    let queued = false;
    for (const c of chunks) {
      if (n >= c.byteLength) {
        n -= c.byteLength;
        continue;
      }
      const rest = n > 0 ? c.subarray(n) : c;
      n = 0;
      this.#out.push(stable ? rest : Uint8Array.prototype.slice.call(rest));
      this.#queuedBytes += rest.byteLength;
      queued = true;
    }
    if (!queued) return null;
    backlogged.add(this);
    this.#schedulePump();
    return stable ? this.#queuedBytes : null;
  }

  /** Bytes of queued output the kernel has taken so far; a stable write is done once this reaches its mark. */
  get written(): number {
    return this.#writtenBytes;
  }

  /** What the kernel takes of `chunks` now; a failed link takes everything (its error is sticky). */
  #tryWrite(chunks: readonly Uint8Array[]): number {
    try {
      return native().socketWrite(this.#fd, chunks);
    } catch (e) {
      this.#fail(new MprunError('ERR_MPRUN_UNREACHABLE', `writing to the agent of node ${this.node}: ${(e as Error).message}`));
      this.#abandonOutput();
      return Infinity;
    }
  }

  /** Drops queued output that can never be written (the link failed or closed): nobody waits on it. */
  #abandonOutput(): void {
    this.#writtenBytes = this.#queuedBytes;
    this.#out.length = 0;
    backlogged.delete(this);
  }

  /** Writes queued output until the kernel stops taking it. */
  pump(): void {
    const out = this.#out;
    while (out.length > 0) {
      if (out[0]!.byteLength === 0) {
        // Nothing empty is queued (#write skips it): a message's buffer was detached (transferred) before it went out.
        this.#fail(new MprunError('ERR_MPRUN_ARG', `a message to node ${this.#nodeName} lost its buffer (transferred or detached) before it was sent`));
        this.#abandonOutput();
        return;
      }
      let n = this.#tryWrite(out);
      if (n === 0) return;
      if (n === Infinity) break;
      this.#writtenBytes += n;
      while (out.length > 0 && n >= out[0]!.byteLength) n -= out.shift()!.byteLength;
      if (n > 0) out[0] = out[0]!.subarray(n);
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
    this.#write([frame(type, h, payload)], true); // a fresh frame: nobody reuses it
  }

  /**
   * Posts a message from `source` for `target` (a rank of the agent's node):
   * one MSG frame, or for more than MAX_PAYLOAD bytes a MSG_START and
   * MSG_PARTs written back to back (nothing else can come between them: this
   * loop is synchronous), which the agent reassembles before relaying.
   */
  message(target: number, source: number, tag: number, dtype: number, bytes: Uint8Array, stable: boolean): number | null {
    this.#check();
    // A put before a message lands before it (as on this link alone, and within a node).
    this.#flushNative();
    const h = { target, id: source, arg: tag, aux: dtype };
    // Each frame's header, then its piece of the payload itself: one writev, no copy of the payload.
    const chunks: Uint8Array[] = [];
    if (bytes.byteLength <= MAX_PAYLOAD) chunks.push(header(DsmFrame.MSG, bytes.byteLength, h), bytes);
    else {
      // MAX_PAYLOAD is a multiple of every element size, so each piece is whole elements.
      for (let at = 0; at < bytes.byteLength; at += MAX_PAYLOAD) {
        const piece = bytes.subarray(at, Math.min(bytes.byteLength, at + MAX_PAYLOAD));
        chunks.push(header(at === 0 ? DsmFrame.MSG_START : DsmFrame.MSG_PART, piece.byteLength, { ...h, offset: at === 0 ? bytes.byteLength : at }), piece);
      }
    }
    return this.#write(chunks, stable);
  }

  /** Writes a frame and resolves with its reply's payload (or value). */
  #request(type: number, h: Partial<Omit<Header, 'bytes' | 'type' | 'id'>>, payload?: Uint8Array, into: Uint8Array | null = null, operand = 0): Promise<unknown> {
    const reply = this.#channel.request(type, h, payload, into, operand);
    this.#refresh();
    return reply;
  }

  request(type: number, h: Partial<Omit<Header, 'bytes' | 'type' | 'id'>>, payload?: Uint8Array): Promise<Uint8Array> {
    return this.#request(type, h, payload) as Promise<Uint8Array>;
  }

  /** Puts `bytes` at `offset` of `rank`'s heap (split into frames of at most MAX_PAYLOAD). */
  put(rank: number, offset: number, bytes: Uint8Array): void {
    this.#check();
    for (let at = 0; at < bytes.byteLength || at === 0; at += MAX_PAYLOAD) {
      const n = Math.min(MAX_PAYLOAD, bytes.byteLength - at);
      // The caller may reuse `bytes` on return: what the kernel does not take now is copied.
      this.#write([header(DsmFrame.PUT, n, { target: rank, offset: offset + at }), bytes.subarray(at, at + n)]);
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

  /**
   * An atomic on shared variable `id` homed at this link's node: served by the
   * agent's native thread when it has one (amo.ts), else as a VAR_AMO here.
   */
  varAtomic(id: number, byteOffset: number, op: number, dtype: number, a: number | bigint, b: number | bigint, big: boolean, unsigned: boolean): Promise<number | bigint> {
    const amo = this.#nativeChannel();
    if (amo === null) return this.atomic(DsmFrame.VAR_AMO, id, byteOffset, op, dtype, a, b, big, unsigned);
    return amo instanceof AmoChannel ? amo.atomic(id, byteOffset, op, dtype, a, b) : amo;
  }

  /**
   * An atomic on world rank `rank`'s heap at this link's node: on the agent's
   * native thread once it serves that heap (#nativeFor: puts to it go there
   * too, so put, fence, atomic keep their order), else as an AMO here.
   */
  heapAtomic(rank: number, byteOffset: number, op: number, dtype: number, a: number | bigint, b: number | bigint, big: boolean): Promise<number | bigint> {
    const onLink = (): Promise<number | bigint> => this.atomic(DsmFrame.AMO, rank, byteOffset, op, dtype, a, b, big, false).then((v) => this.#attached(rank, v));
    const amo = this.#nativeFor(rank);
    if (amo === null) return onLink();
    return amo instanceof AmoChannel ? amo.atomic(heapTarget(rank), byteOffset, op, dtype, a, b, onLink) : amo;
  }

  /** A get of world rank `rank`'s heap at this link's node: where heapAtomic would go, so it comes after the puts before it. */
  heapGet(rank: number, byteOffset: number, dst: Uint8Array): Promise<void> {
    const onLink = (): Promise<void> => this.get(rank, byteOffset, dst).then(() => this.#attached(rank, undefined));
    const amo = this.#nativeFor(rank);
    if (amo === null) return onLink();
    return amo instanceof AmoChannel ? amo.get(heapTarget(rank), byteOffset, dst, onLink) : amo;
  }

  /**
   * The native thread's connection for operations on `rank`'s heap: once the
   * agent has attached it and no put to it on this link awaits its flush (then
   * this link carries them, in order), else null.
   */
  #nativeFor(rank: number): AmoChannel | null | Promise<never> {
    return this.#served.has(rank) && !this.#linkPuts.has(rank) ? this.#nativeChannel() : null;
  }

  /** `rank`'s heap is attached at the agent (a request on it was answered); passes `v` on. */
  #attached<T>(rank: number, v: T): T {
    if (this.#amoPort > 0) this.#served.add(rank);
    return v;
  }

  /** The connection to the agent's native thread (made at first use), null without one, or why it cannot be made. */
  #nativeChannel(): AmoChannel | null | Promise<never> {
    if (this.#amoPort === 0 || this.#host === null || !nativeAtomicsWanted()) return null;
    try {
      this.#amo ??= AmoChannel.open(this.#host, this.#amoPort, this.#secret, this.#nodeName);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#amo;
  }

  /** An atomic on an element of type `dtype` (8 bytes of each operand on the wire). */
  atomic(type: typeof DsmFrame.AMO | typeof DsmFrame.VAR_AMO, target: number, byteOffset: number, op: number, dtype: number, a: number | bigint, b: number | bigint, big: boolean, unsigned: boolean): Promise<number | bigint> {
    const operands = Buffer.allocUnsafe(16);
    writeOperand(operands, 0, a);
    writeOperand(operands, 8, b);
    return this.#request(type, { target, offset: byteOffset, aux: op | (dtype << 8) }, operands, null, (big ? BIG : 0) | (unsigned ? UNSIGNED : 0)) as Promise<number | bigint>;
  }

  /** Resolves when every put written before it has landed. */
  /**
   * A put into world rank `rank`'s heap at this link's node: to the agent's
   * native thread once it serves that heap and no put to it is unflushed on
   * this link (#nativeFor), else on this link: a put that took the other way
   * could land before an earlier one the agent's JavaScript has not applied.
   */
  heapPut(rank: number, offset: number, bytes: Uint8Array): void {
    const amo = this.#nativeFor(rank);
    if (amo instanceof AmoChannel) {
      amo.put(heapTarget(rank), offset, bytes);
      this.#nativePuts++;
      return;
    }
    this.put(rank, offset, bytes);
    this.#linkPuts.set(rank, (this.#linkPuts.get(rank) ?? 0) + 1);
  }

  /** Resolves when every put written before it has landed (on this link and at the native thread). */
  async flush(): Promise<void> {
    this.#flushNative();
    if (this.unflushed === 0) return;
    this.unflushed = 0;
    const answered = [...this.#linkPuts];
    await this.#request(DsmFrame.FLUSH, {});
    for (const [r, n] of answered) {
      const left = (this.#linkPuts.get(r) ?? 0) - n;
      if (left > 0) this.#linkPuts.set(r, left);
      else this.#linkPuts.delete(r);
      this.#attached(r, undefined);
    }
  }

  /** The native thread's puts applied (one round trip in the call: it answers at once). */
  #flushNative(): void {
    if (this.#nativePuts === 0 || this.#amo === null) return;
    this.#nativePuts = 0;
    this.#amo.flush();
  }

  close(): void {
    this.#amo?.close();
    this.#channel.close(new MprunError('ERR_MPRUN_FINALIZED', 'the world is finalized'));
    this.#abandonOutput();
    this.#socket.destroy();
  }
}
