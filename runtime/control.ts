/**
 * A rank's connection to the job controller: business cards (put, and fetched
 * by rank: the node's at init, a peer's on its first use), fence, abort,
 * finalize. It counts the bytes the controller sent it (wire-up counters).
 */
import { readSync, writeSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { MprunError } from '../core/errors.js';
import type { WaitReport } from './wait.js';
import { encodeFrame, FrameReader, parseTcpAddress, socketFd, WIRE_VERSION, type Frame } from '../core/wire.js';

export class ControlClient {
  readonly #socket: Socket;
  readonly #reader = new FrameReader();
  readonly #waiting: Array<{ t: string; resolve: (f: Frame) => void; reject: (e: Error) => void }> = [];
  /** 'cards' requests by id (their replies may come in any order: each waits for its cards). */
  readonly #cardRequests = new Map<number, { resolve: (cards: unknown[]) => void; reject: (e: Error) => void }>();
  #nextId = 0;
  #closed: Error | null = null;
  #idleUnref = false;
  /** Bytes received from the controller. */
  received = 0;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#arrived(chunk));
    socket.on('close', () => {
      this.#closed = new MprunError('ERR_MPRUN_ABORTED', 'the connection to mprun closed');
      for (const w of this.#waiting.splice(0)) w.reject(this.#closed);
      for (const w of this.#cardRequests.values()) w.reject(this.#closed);
      this.#cardRequests.clear();
    });
    socket.on('error', () => undefined);
  }

  /** `address`: a Unix socket path (local jobs) or HOST:PORT (jobs across nodes). */
  static connect(address: string, secret: string, rank: number): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const tcp = parseTcpAddress(address);
      const socket = tcp === null ? connect(address) : connect(tcp);
      socket.once('error', (e) => reject(new MprunError('ERR_MPRUN_UNREACHABLE', `cannot reach mprun at ${address}: ${e.message}`)));
      socket.once('connect', () => {
        socket.setNoDelay(true);
        socket.write(encodeFrame({ t: 'auth', v: WIRE_VERSION, secret, rank, pid: process.pid }));
        resolve(new ControlClient(socket));
      });
    });
  }

  #request(frame: Frame, reply: string): Promise<Frame> {
    if (this.#closed !== null) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      // A reply is awaited: keep the process alive for it.
      this.#socket.ref();
      this.#waiting.push({ t: reply, resolve, reject });
      this.#socket.write(encodeFrame(frame));
    });
  }

  #arrived(chunk: Buffer): void {
    this.received += chunk.byteLength;
    for (const f of this.#reader.push(chunk)) {
      if (f.t === 'cards') this.#cardsArrived(f);
      else {
        const i = this.#waiting.findIndex((w) => w.t === f.t);
        if (i >= 0) this.#waiting.splice(i, 1)[0]!.resolve(f);
      }
      if (this.#idle() && this.#idleUnref) this.#socket.unref();
    }
  }

  /**
   * cards(), blocking this thread: for a synchronous collective meeting a peer
   * on another node for the first time, while the event loop cannot run. The
   * request is written to the connection's descriptor and the reply read from
   * it; frames read meanwhile that answer other requests settle those as the
   * event loop would have. Refused while earlier writes are still queued in
   * the socket (the request would overtake them).
   */
  cardsSync(ranks: readonly number[], timeoutMs = 300_000): unknown[] {
    if (this.#closed !== null) throw this.#closed;
    const fd = socketFd(this.#socket);
    if (fd === null || this.#socket.writableLength > 0) {
      throw new MprunError('ERR_MPRUN_UNSUPPORTED', 'cannot ask mprun for business cards synchronously now (its connection is busy)');
    }
    const id = this.#nextId++;
    let answer: unknown[] | null = null;
    let failure: Error | null = null;
    this.#cardRequests.set(id, { resolve: (c) => (answer = c), reject: (e) => (failure = e) });
    const nap = new Int32Array(new SharedArrayBuffer(4));
    const deadline = Date.now() + timeoutMs;
    const again = (e: unknown): boolean => {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') throw new MprunError('ERR_MPRUN_ABORTED', `the connection to mprun failed: ${(e as Error).message}`);
      if (Date.now() > deadline) throw new MprunError('ERR_MPRUN_TIMEOUT', `mprun did not answer a request for the cards of rank(s) ${ranks.join(',')} within ${timeoutMs} ms`);
      Atomics.wait(nap, 0, 0, 0.2);
      return true;
    };
    const out = encodeFrame({ t: 'cards', id, ranks: [...ranks] });
    for (let at = 0; at < out.byteLength; ) {
      try {
        at += writeSync(fd, out, at, out.byteLength - at);
      } catch (e) {
        again(e);
      }
    }
    const buf = Buffer.allocUnsafe(64 * 1024);
    while (answer === null && failure === null) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.byteLength, null);
      } catch (e) {
        again(e);
        continue;
      }
      if (n === 0) throw new MprunError('ERR_MPRUN_ABORTED', 'the connection to mprun closed');
      this.#arrived(Buffer.from(buf.subarray(0, n)));
    }
    if (failure !== null) throw failure;
    return answer!;
  }

  #idle(): boolean {
    return this.#waiting.length === 0 && this.#cardRequests.size === 0;
  }

  #cardsArrived(f: Frame): void {
    const id = f.id as number;
    const w = this.#cardRequests.get(id);
    if (w === undefined) return;
    this.#cardRequests.delete(id);
    if (Array.isArray(f.cards)) w.resolve(f.cards as unknown[]);
    else w.reject(new MprunError('ERR_MPRUN_PROTOCOL', 'mprun answered a cards request without cards'));
  }

  /** The business cards of `ranks`, in that order; resolves once each of them has put its card. */
  cards(ranks: readonly number[]): Promise<unknown[]> {
    if (this.#closed !== null) return Promise.reject(this.#closed);
    if (ranks.length === 0) return Promise.resolve([]);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#socket.ref();
      this.#cardRequests.set(id, { resolve, reject });
      this.#socket.write(encodeFrame({ t: 'cards', id, ranks: [...ranks] }));
    });
  }

  put(key: string, value: unknown): void {
    this.#socket.write(encodeFrame({ t: 'put', key, value }));
  }

  /** Waits for every rank's fence; returns every key put before it. */
  async fence(): Promise<Record<string, unknown>> {
    const f = await this.#request({ t: 'fence' }, 'fenced');
    return f.kv as Record<string, unknown>;
  }

  /** What this rank waits in, for mprun's hang reports (an empty list: nothing any more). */
  waits(waits: WaitReport[]): void {
    if (this.#closed === null) this.#socket.write(encodeFrame({ t: 'waits', waits }));
  }

  abort(code: number, message: string): void {
    this.#socket.write(encodeFrame({ t: 'abort', code, message }));
  }

  async finalize(): Promise<void> {
    await this.#request({ t: 'finalize' }, 'finalized');
  }

  /** Lets the process exit while the connection is idle. */
  unref(): void {
    this.#idleUnref = true;
    if (this.#idle()) this.#socket.unref();
  }

  close(): void {
    this.#socket.end();
  }
}
