/**
 * A rank's connection to the job controller: business cards (put, and fetched
 * by rank: the node's at init, a peer's on its first use), fence, abort,
 * finalize. It counts the bytes the controller sent it (wire-up counters).
 */
import { connect, type Socket } from 'node:net';
import { MprunError } from '../core/errors.js';
import type { WaitReport } from './wait.js';
import { encodeFrame, FrameReader, parseTcpAddress, WIRE_VERSION, type Frame } from '../core/wire.js';

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
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.byteLength;
      for (const f of this.#reader.push(chunk)) {
        if (f.t === 'cards') this.#cardsArrived(f);
        else {
          const i = this.#waiting.findIndex((w) => w.t === f.t);
          if (i >= 0) this.#waiting.splice(i, 1)[0]!.resolve(f);
        }
        if (this.#idle() && this.#idleUnref) this.#socket.unref();
      }
    });
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
