/**
 * One data connection to the agent, from a rank on another node (or this
 * node's own ranks, for shared variables and semaphores): the job secret
 * first (AUTH), then requests, each dispatched to the part of the service
 * that serves it. No sockets here: the service feeds the connection's bytes
 * to push() and gives it a way to write and to close.
 *
 * A malformed frame (ProtocolError: a bad version, type, length or payload)
 * closes the connection, naming why, and the service goes on. A well-formed
 * request the agent cannot serve (RequestRefused, or any other failure of
 * serving it) is answered with an ERROR frame naming why, so the rank's
 * request rejects with that reason and its connection, shared by all its
 * operations to this node, stays up; PUT and MSG have no reply to carry an
 * ERROR, so a refused one closes the connection too.
 */
import { secretMatches } from '../../core/wire.js';
import type { TypedArray } from '../../core/types.js';
import { DsmFrame, frame, FrameParser, HEADER_BYTES, MAX_AUTH_PAYLOAD, ProtocolError, typeName, type Header } from './frames.js';
import type { NodeHeaps } from './node-heaps.js';
import type { PageHomes } from './page-homes.js';
import type { MessageRelay } from './relay.js';
import { atomicReply } from './remote-atomic.js';
import type { RemoteMemoryAccess } from './rma.js';
import type { SemaphoreTable } from './semaphores.js';

/** The parts of the service that connections dispatch to. */
export interface DataServices {
  secret: string;
  nodeIndex: number;
  heaps: NodeHeaps;
  rma: RemoteMemoryAccess;
  relay: MessageRelay;
  homes: PageHomes;
  semaphores: SemaphoreTable;
  /** The port of the native serving thread for shared-variable atomics (amo.ts), 0 when there is none. */
  amoPort: number;
}

/** The connection's transport: writes replies, closes on a malformed frame. */
export interface ConnectionEnds {
  /** Writes chunks in order, as one burst. */
  write(...chunks: Uint8Array[]): void;
  /** Closes the connection; `reason` says why (the service logs it). */
  close(reason: string): void;
}

const MAX_SMALL_REQUEST_BYTES = 4096;

/** Frames answered by a reply (so a refusal is answered with ERROR). */
const ANSWERED: ReadonlySet<number> = new Set([DsmFrame.GET, DsmFrame.AMO, DsmFrame.FLUSH, DsmFrame.VAR_REGISTER, DsmFrame.VAR_WRITE, DsmFrame.VAR_FETCH, DsmFrame.VAR_AMO, DsmFrame.SEM]);

function expectPayload(h: Header, bytes: number): void {
  if (h.bytes - HEADER_BYTES !== bytes) throw new ProtocolError(`${typeName(h.type)} with ${h.bytes - HEADER_BYTES} bytes of payload, expected ${bytes}`);
}

export class DataConnection {
  readonly #services: DataServices;
  readonly #ends: ConnectionEnds;
  readonly #parser: FrameParser;
  /** The world rank that authenticated (-1 until AUTH). */
  #peer = -1;
  /** The typed array a MSG frame's payload is landing in. */
  #landing: TypedArray | null = null;
  /** A message arriving in pieces (MSG_START, MSG_PARTs): its first header, landing array and the bytes in so far. */
  #pieces: { h: Header; landing: TypedArray; bytes: number; next: number } | null = null;
  /** Why the frame being received cannot be served (answered with ERROR at its end), or null. */
  #refusal: string | null = null;
  #closed = false;

  constructor(services: DataServices, ends: ConnectionEnds) {
    this.#services = services;
    this.#ends = ends;
    this.#parser = new FrameParser({ begin: (h) => this.#begin(h), end: (h, payload) => this.#end(h, payload) });
  }

  /** The world rank that authenticated, or -1. */
  get peer(): number {
    return this.#peer;
  }

  /** The connection is gone: replies still owed (a semaphore's waiters) are not written. */
  lost(): void {
    this.#closed = true;
  }

  /** Feeds bytes from the connection; a malformed frame closes it (and later bytes are ignored). */
  push(chunk: Uint8Array): void {
    if (this.#closed) return;
    try {
      this.#parser.push(chunk);
    } catch (e) {
      this.#closed = true;
      this.#ends.close((e as Error).message);
    }
  }

  #begin(h: Header): Uint8Array | null {
    this.#refusal = null;
    if (this.#peer < 0) {
      if (h.type !== DsmFrame.AUTH) throw new ProtocolError(`first frame was ${typeName(h.type)}, not AUTH`);
      if (h.bytes - HEADER_BYTES > MAX_AUTH_PAYLOAD) throw new ProtocolError('oversized AUTH frame');
      return null;
    }
    try {
      return this.#payloadTarget(h);
    } catch (e) {
      if (e instanceof ProtocolError || !ANSWERED.has(h.type)) throw e;
      this.#refusal = (e as Error).message;
      return null; // the payload is read and dropped
    }
  }

  /** Checks a request's header; where its payload lands (null: a fresh buffer). */
  #payloadTarget(h: Header): Uint8Array | null {
    const s = this.#services;
    const payload = h.bytes - HEADER_BYTES;
    // The sender writes a message's pieces back to back: nothing else comes between them.
    if (this.#pieces !== null && h.type !== DsmFrame.MSG_PART) throw new ProtocolError(`${typeName(h.type)} frame inside a message in pieces`);
    switch (h.type) {
      case DsmFrame.PUT:
        return s.rma.putTarget(h);
      case DsmFrame.GET:
        expectPayload(h, 0);
        s.rma.checkGet(h);
        return null;
      case DsmFrame.AMO:
      case DsmFrame.VAR_AMO:
        expectPayload(h, 16);
        return null;
      case DsmFrame.FLUSH:
        expectPayload(h, 0);
        return null;
      case DsmFrame.MSG: {
        s.heaps.local(h.target, 'MSG');
        const landing = s.relay.landing(h.aux, payload);
        this.#landing = landing;
        return new Uint8Array(landing.buffer, landing.byteOffset, payload);
      }
      case DsmFrame.MSG_START: {
        s.heaps.local(h.target, 'MSG');
        const bytes = h.offset;
        if (payload === 0 || payload >= bytes) throw new ProtocolError(`MSG_START of ${payload} bytes for a message of ${bytes}`);
        const landing = s.relay.landing(h.aux, bytes);
        this.#pieces = { h, landing, bytes, next: payload };
        return new Uint8Array(landing.buffer, landing.byteOffset, payload);
      }
      case DsmFrame.MSG_PART: {
        const m = this.#pieces;
        if (m === null) throw new ProtocolError('MSG_PART frame without a MSG_START');
        if (h.target !== m.h.target || h.id !== m.h.id || h.arg !== m.h.arg || h.aux !== m.h.aux || h.offset !== m.next || payload === 0 || m.next + payload > m.bytes) {
          throw new ProtocolError(`MSG_PART of ${payload} bytes at ${h.offset} does not continue the message (${m.next} of ${m.bytes} bytes in)`);
        }
        m.next += payload;
        return new Uint8Array(m.landing.buffer, m.landing.byteOffset + h.offset, payload);
      }
      case DsmFrame.VAR_REGISTER:
      case DsmFrame.SEM:
        if (payload > MAX_SMALL_REQUEST_BYTES) throw new ProtocolError(`oversized ${typeName(h.type)} frame`);
        return null;
      case DsmFrame.VAR_WRITE:
      case DsmFrame.VAR_FETCH:
        s.homes.variable(h.target);
        return null;
      default:
        throw new ProtocolError(`unexpected ${typeName(h.type)} frame`);
    }
  }

  #end(h: Header, payload: Uint8Array): void {
    if (this.#peer < 0) {
      if (!secretMatches(this.#services.secret, Buffer.from(payload).toString('utf8'))) throw new ProtocolError('wrong job secret');
      this.#peer = h.target;
      this.#ends.write(frame(DsmFrame.AUTH_OK, { id: h.id, arg: this.#services.amoPort }));
      return;
    }
    const landing = this.#landing;
    this.#landing = null;
    if (this.#refusal !== null) {
      this.#refuse(h, this.#refusal);
      return;
    }
    try {
      this.#serve(h, payload, landing);
    } catch (e) {
      if (e instanceof ProtocolError || !ANSWERED.has(h.type)) throw e;
      this.#refuse(h, (e as Error).message);
    }
  }

  #refuse(h: Header, reason: string): void {
    this.#ends.write(frame(DsmFrame.ERROR, { id: h.id }, Buffer.from(`the agent of node ${this.#services.nodeIndex}: ${reason}`)));
  }

  /** Answers `h` with OK; false when the connection is gone. */
  #ok(h: Header): boolean {
    if (this.#closed) return false;
    this.#ends.write(frame(DsmFrame.OK, { id: h.id }));
    return true;
  }

  #serve(h: Header, payload: Uint8Array, landing: TypedArray | null): void {
    const s = this.#services;
    const w = this.#ends;
    switch (h.type) {
      case DsmFrame.PUT:
        s.rma.putLanded(h);
        return;
      case DsmFrame.GET:
        w.write(...s.rma.get(h));
        return;
      case DsmFrame.AMO:
        w.write(s.rma.atomic(h, payload));
        return;
      case DsmFrame.FLUSH:
        w.write(s.rma.flush(h));
        return;
      case DsmFrame.MSG:
        s.relay.deliver(s.heaps.local(h.target, 'MSG'), h, landing!);
        return;
      case DsmFrame.MSG_START:
        return;
      case DsmFrame.MSG_PART: {
        const m = this.#pieces!;
        if (m.next < m.bytes) return;
        this.#pieces = null;
        s.relay.deliver(s.heaps.local(m.h.target, 'MSG'), m.h, m.landing);
        return;
      }
      case DsmFrame.VAR_REGISTER:
        s.homes.register(h.target, payload);
        this.#ok(h);
        return;
      case DsmFrame.VAR_WRITE:
        s.homes.write(h.target, payload);
        this.#ok(h);
        return;
      case DsmFrame.VAR_FETCH:
        w.write(s.homes.fetch(h, payload));
        return;
      case DsmFrame.VAR_AMO:
        w.write(atomicReply(h.id, s.homes.atomic(h, payload)));
        return;
      case DsmFrame.SEM:
        s.semaphores.serve(h.aux, Buffer.from(payload).toString('utf8'), h.arg, () => this.#ok(h));
        return;
    }
  }
}
