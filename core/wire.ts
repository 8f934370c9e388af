/**
 * The control-plane wire format between ranks, agents and the controller:
 * frames of [u32 length][msgpack body], at most MAX_FRAME bytes. The first
 * frame on every connection must be {t:'auth', secret} with the per-job
 * secret; anything else, a bad secret, an oversized or undecodable frame
 * closes that connection (and only that one).
 */
import type { Socket } from 'node:net';
import { packValue, unpackValue } from './codec.js';

export const WIRE_VERSION = 1;
export const MAX_FRAME = 64 * 1024 * 1024;
/** The longest first frame a server takes (the auth: a secret, a rank or node, a pid). */
export const MAX_AUTH_FRAME = 4096;
/** How long a server waits for a connection's auth before it closes it. */
export const AUTH_TIMEOUT_MS = 10_000;

export type Frame = { t: string } & Record<string, unknown>;

export function encodeFrame(frame: Frame): Buffer {
  const body = packValue(frame);
  const out = Buffer.allocUnsafe(4 + body.byteLength);
  out.writeUInt32LE(body.byteLength, 0);
  out.set(body, 4);
  return out;
}

export class FrameError extends Error {}

/**
 * Splits a byte stream into frames; throws FrameError on malformed input.
 * `firstLimit` bounds the first frame (a server's: the auth, MAX_AUTH_FRAME),
 * so that a peer that has not shown the secret cannot make it buffer and
 * decode up to MAX_FRAME. A frame's chunks are joined once it is whole.
 */
export class FrameReader {
  #chunks: Buffer[] = [];
  #bytes = 0;
  #limit: number;

  constructor(firstLimit = MAX_FRAME) {
    this.#limit = firstLimit;
  }

  push(chunk: Buffer): Frame[] {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    const frames: Frame[] = [];
    while (this.#bytes >= 4) {
      if (this.#chunks[0]!.length < 4) this.#chunks = [Buffer.concat(this.#chunks)];
      const len = this.#chunks[0]!.readUInt32LE(0);
      if (len === 0 || len > this.#limit) throw new FrameError(`frame length ${len} out of bounds`);
      if (this.#bytes < 4 + len) break;
      const buf = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
      let value: unknown;
      try {
        value = unpackValue(buf.subarray(4, 4 + len));
      } catch (e) {
        throw new FrameError(`undecodable frame: ${(e as Error).message}`);
      }
      if (typeof value !== 'object' || value === null || typeof (value as { t?: unknown }).t !== 'string') throw new FrameError('frame without a type');
      frames.push(value as Frame);
      const rest = buf.subarray(4 + len);
      this.#chunks = rest.length === 0 ? [] : [rest];
      this.#bytes = rest.length;
      this.#limit = MAX_FRAME;
    }
    return frames;
  }
}

/**
 * Whether `given` is the job's secret, in constant time: every byte is compared
 * whatever the first difference. Written out rather than node:crypto's
 * timingSafeEqual, whose import loads the whole crypto module (some twenty of
 * Node's internal modules) into every rank at start.
 */
export function secretMatches(expected: string, given: unknown): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * Serves one connection: the first frame must authenticate; after that every
 * frame goes to `onFrame`. Protocol violations are reported to `onReject` and
 * close this socket only.
 */
export function serveConnection(
  socket: Socket,
  secret: string,
  onAuth: (frame: Frame) => void,
  onFrame: (frame: Frame) => void,
  onReject: (why: string) => void,
  authTimeoutMs = AUTH_TIMEOUT_MS,
): void {
  const reader = new FrameReader(MAX_AUTH_FRAME);
  let authed = false;
  // Nothing but the auth is taken from a peer that has not shown the secret, nor for long.
  const deadline = setTimeout(() => {
    onReject(`no auth within ${authTimeoutMs / 1000} s`);
    socket.destroy();
  }, authTimeoutMs).unref();
  socket.on('close', () => clearTimeout(deadline));
  socket.on('data', (chunk: Buffer) => {
    let frames: Frame[];
    try {
      frames = reader.push(chunk);
    } catch (e) {
      onReject((e as Error).message);
      socket.destroy();
      return;
    }
    for (const f of frames) {
      if (!authed) {
        if (f.t !== 'auth' || !secretMatches(secret, f.secret)) {
          onReject(f.t !== 'auth' ? `first frame was '${f.t}', not auth` : 'wrong job secret');
          socket.destroy();
          return;
        }
        if (f.v !== WIRE_VERSION) {
          onReject(`wire version ${String(f.v)}, expected ${WIRE_VERSION}`);
          socket.destroy();
          return;
        }
        try {
          onAuth(f);
        } catch (e) {
          onReject(`refused: ${(e as Error).message}`);
          socket.destroy();
          return;
        }
        authed = true;
        clearTimeout(deadline);
        continue;
      }
      try {
        onFrame(f);
      } catch (e) {
        onReject(`bad '${f.t}' frame: ${(e as Error).message}`);
        socket.destroy();
        return;
      }
    }
  });
  socket.on('error', () => socket.destroy());
}

/** HOST:PORT (IPv6 hosts in brackets) as its parts, or null for anything else (a Unix socket path). */
/**
 * The descriptor behind a connected socket, or null: Node keeps it on the
 * socket's private libuv handle. For writes and reads that must not wait for
 * the event loop (a rank's frames to an agent, a synchronous card request).
 */
export function socketFd(socket: Socket): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

export function parseTcpAddress(address: string): { host: string; port: number } | null {
  const m = /^(\[[^\]]*\]|[^/:\[\]]*):(\d+)$/.exec(address);
  if (m === null) return null;
  const port = Number(m[2]);
  if (m[1] === '' || port <= 0 || port > 65535) return null;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}
