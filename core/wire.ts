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

export type Frame = { t: string } & Record<string, unknown>;

export function encodeFrame(frame: Frame): Buffer {
  const body = packValue(frame);
  const out = Buffer.allocUnsafe(4 + body.byteLength);
  out.writeUInt32LE(body.byteLength, 0);
  out.set(body, 4);
  return out;
}

export class FrameError extends Error {}

/** Splits a byte stream into frames; throws FrameError on malformed input. */
export class FrameReader {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const frames: Frame[] = [];
    while (this.#buf.length >= 4) {
      const len = this.#buf.readUInt32LE(0);
      if (len === 0 || len > MAX_FRAME) throw new FrameError(`frame length ${len} out of bounds`);
      if (this.#buf.length < 4 + len) break;
      let value: unknown;
      try {
        value = unpackValue(this.#buf.subarray(4, 4 + len));
      } catch (e) {
        throw new FrameError(`undecodable frame: ${(e as Error).message}`);
      }
      if (typeof value !== 'object' || value === null || typeof (value as { t?: unknown }).t !== 'string') throw new FrameError('frame without a type');
      frames.push(value as Frame);
      this.#buf = this.#buf.subarray(4 + len);
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
): void {
  const reader = new FrameReader();
  let authed = false;
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
