/**
 * One rpmem connection as the client sees it: frames out (a header, then the
 * caller's payload as it is: no copy), replies matched to their requests by
 * core/channel.ts, the first loss sticky. Control sessions over ssh write to
 * the daemon's stdin; TCP connections (lanes, and control sessions to a daemon
 * mprun started) come from dial(), with bounded write queues and reads into
 * one reused buffer.
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { RequestChannel, type ReplyRules } from '../../core/channel.js';
import { rpmemError, type MprunError } from '../../core/errors.js';
import { FrameParser, HEADER_BYTES, ProtocolError, type HeaderFields } from '../../core/frames.js';
import { socketFd } from '../../core/wire.js';
import { native } from '../../native/index.js';
import { errnoName, MAX_FRAME_PAYLOAD, RpmemFrame, RPMEM_PROTOCOL } from './protocol.js';

/**
 * How long a vanished target host takes to fail a connection to it, idle or
 * not (tcpDeadPeer): two minutes, as a living daemon's lane may hold its
 * window shut a while when its disk falls behind.
 */
const DEAD_PEER_SECONDS = 120;

/** A failed REPLY's error: the errno of its status, and the target's message from its JSON body when there is one. */
function statusError(status: number, body: Uint8Array, what: string): MprunError {
  const name = errnoName(status);
  let message = `${what} failed on the target`;
  try {
    const j = JSON.parse(Buffer.from(body).toString('utf8')) as { message?: string };
    if (typeof j.message === 'string') message = j.message;
  } catch {
    // a data reply, or no body
  }
  return rpmemError(name, message);
}

/**
 * Every answer is a REPLY whose arg is a status (0, else an errno); a
 * successful READ's bytes land in the caller's array. A request's context
 * names the operation, for messages.
 */
const REPLIES: ReplyRules<string, Uint8Array> = {
  land(h, into) {
    if (h.type !== RpmemFrame.REPLY) throw new ProtocolError(`unexpected ${RPMEM_PROTOCOL.typeName(h.type)} ${h.id} from the target`);
    return h.arg === 0 && into !== null && into.byteLength === h.bytes - HEADER_BYTES ? into : null;
  },
  settle(h, payload, what) {
    if (h.arg !== 0) throw statusError(h.arg, payload, what);
    return payload;
  },
};

/** Requests and replies over one byte stream: `write` takes bytes (false: full), `drainWait` resolves when there is room again. */
export class RpmemConnection {
  readonly #write: (b: Buffer | Uint8Array) => boolean;
  readonly #drainWait: () => Promise<void>;
  readonly #channel: RequestChannel<string, Uint8Array>;
  readonly #parser: FrameParser;

  constructor(write: (b: Buffer | Uint8Array) => boolean, drainWait: () => Promise<void>) {
    this.#write = write;
    this.#drainWait = drainWait;
    this.#channel = new RequestChannel(RPMEM_PROTOCOL, (type, h, payload) => this.post(type, h, payload), REPLIES);
    this.#parser = new FrameParser(this.#channel, RPMEM_PROTOCOL);
  }

  /** The error that ended the connection (sticky), or null. */
  get lost(): Error | null {
    return this.#channel.error;
  }

  /** Bytes the connection read. */
  feed(chunk: Uint8Array): void {
    try {
      this.#parser.push(chunk);
    } catch (e) {
      this.fail(rpmemError('EPROTO', `protocol error from the target: ${(e as Error).message}`));
    }
  }

  fail(e: MprunError): void {
    this.#channel.fail(e);
  }

  /** Sends a frame; waits for room when the stream is full. */
  async post(type: number, h: HeaderFields, payload?: Uint8Array): Promise<void> {
    if (this.lost !== null) throw this.lost;
    const n = payload?.byteLength ?? 0;
    const head = Buffer.allocUnsafe(HEADER_BYTES);
    RPMEM_PROTOCOL.writeHeader(head, 0, type, n, h);
    let room = this.#write(head);
    if (n > 0) room = this.#write(payload!);
    if (!room) await this.#drainWait();
  }

  /** Sends a request; resolves with its reply's payload (in `into` when that fits: a READ). `what` names it in errors. */
  request(type: number, h: HeaderFields, what: string, payload?: Uint8Array, into: Uint8Array | null = null): Promise<Uint8Array> {
    return this.#channel.request(type, h, payload, into, what);
  }

  /** A control request with a JSON body and a JSON reply. */
  async json(type: number, h: HeaderFields, what: string, body?: unknown): Promise<Record<string, unknown>> {
    const r = await this.request(type, h, what, body === undefined ? undefined : Buffer.from(JSON.stringify(body)));
    return r.byteLength === 0 ? {} : (JSON.parse(Buffer.from(r).toString('utf8')) as Record<string, unknown>);
  }
}

/**
 * Bytes a lane may have handed to its socket and not yet to the kernel before a
 * writer waits, and the level at which it goes on: several frames stay in
 * flight, and the socket never runs dry while the writer waits (Node's 'drain'
 * comes only once the queue is empty).
 */
const LANE_QUEUE_HIGH = 8 * MAX_FRAME_PAYLOAD;
const LANE_QUEUE_LOW = 4 * MAX_FRAME_PAYLOAD;

/** Bytes one read of a lane may take: with Node's default (64 KiB), a 1 MiB reply cost 16 event-loop turns. */
const READ_BUFFER_BYTES = 4 * 1024 * 1024;

/** A connection over `sock`; `feed` gets what the socket reads (see dial: reads land in one reused buffer). */
function socketConnection(sock: Socket, label: string): RpmemConnection {
  let queued = 0;
  let waiters: Array<() => void> = [];
  const flushed = (n: number) => (): void => {
    queued -= n;
    if (queued <= LANE_QUEUE_LOW && waiters.length > 0) {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  };
  sock.on('close', () => flushed(0)());
  const conn = new RpmemConnection(
    (b) => {
      queued += b.byteLength;
      sock.write(b, flushed(b.byteLength));
      return queued < LANE_QUEUE_HIGH;
    },
    () => (queued >= LANE_QUEUE_HIGH && !sock.destroyed ? new Promise<void>((r) => waiters.push(r)) : Promise.resolve()),
  );
  sock.on('error', (e) => conn.fail(rpmemError('ECONNRESET', `connection to ${label} failed: ${e.message}`)));
  sock.on('close', () => conn.fail(rpmemError('ECONNRESET', `connection to ${label} closed`)));
  return conn;
}

/** A TCP connection to a daemon that proved the secret. */
export interface Dialed {
  sock: Socket;
  ch: RpmemConnection;
}

/** Connects to a daemon's lane listener and proves the secret (AUTH). */
export async function dial(address: string, port: number, secret: string, label: string): Promise<Dialed> {
  let ch: RpmemConnection | null = null;
  // Reads land in one buffer, reused: the parser copies every payload out (a read reply straight
  // into the caller's array) before the next read.
  const sock = connect({
    host: address,
    port,
    onread: {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (n: number, buf: Uint8Array): boolean => {
        ch?.feed(buf.subarray(0, n));
        return true;
      },
    },
  });
  sock.setNoDelay(true);
  try {
    await once(sock, 'connect');
  } catch (e) {
    throw rpmemError('ECONNREFUSED', `cannot connect to ${label} at ${address}:${port}: ${(e as Error).message}`);
  }
  // A target host that vanishes (a crash, a cut link) fails the connection, and the request
  // waiting on it, within two minutes: idle, no reply would ever come (a drain's, at the end of a
  // checkpoint) and every rank waited for ever in the checkpoint's agreement.
  const fd = socketFd(sock);
  try {
    if (fd !== null) native().tcpDeadPeer(fd, DEAD_PEER_SECONDS);
  } catch (e) {
    sock.destroy();
    throw e;
  }
  const conn = socketConnection(sock, label);
  ch = conn;
  await conn.request(RpmemFrame.AUTH, {}, 'authentication', Buffer.from(secret));
  return { sock, ch: conn };
}
