/** A rank's connection to the job controller: business cards, fence, abort, finalize. */
import { connect, type Socket } from 'node:net';
import { MprunError } from '../core/errors.js';
import type { WaitReport } from './wait.js';
import { encodeFrame, FrameReader, parseTcpAddress, WIRE_VERSION, type Frame } from '../core/wire.js';

export class ControlClient {
  readonly #socket: Socket;
  readonly #reader = new FrameReader();
  readonly #waiting: Array<{ t: string; resolve: (f: Frame) => void; reject: (e: Error) => void }> = [];
  #closed: Error | null = null;
  #idleUnref = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      for (const f of this.#reader.push(chunk)) {
        const i = this.#waiting.findIndex((w) => w.t === f.t);
        if (i >= 0) this.#waiting.splice(i, 1)[0]!.resolve(f);
        if (this.#waiting.length === 0 && this.#idleUnref) this.#socket.unref();
      }
    });
    socket.on('close', () => {
      this.#closed = new MprunError('ERR_MPRUN_ABORTED', 'the connection to mprun closed');
      for (const w of this.#waiting.splice(0)) w.reject(this.#closed);
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
    if (this.#waiting.length === 0) this.#socket.unref();
  }

  close(): void {
    this.#socket.end();
  }
}
