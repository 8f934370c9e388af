/**
 * Requests and their replies over one connection: every request gets an id,
 * the frame that comes back with that id settles it, and a lost connection
 * fails every request still waiting with one error that sticks (every later
 * request rejects with it at once). The DSM client's links to node agents and
 * the rpmem client's control sessions and lanes each match replies with one.
 *
 * The channel matches; its owner writes and reads. `send` puts a request's
 * frame on the wire (returning a promise when it waits for room), the owner
 * feeds the connection's bytes to a FrameParser with the channel as its
 * handler, and the owner's ReplyRules say where a reply's payload lands (the
 * caller's own array, so a large reply costs no extra copy) and what it
 * settles the request with. Ids run from 1 to 2^32 - 1 and wrap.
 */
import { ProtocolError, type FrameHandler, type FrameProtocol, type Header, type HeaderFields } from './frames.js';

/** How a protocol's replies settle its requests. `C`: what a request carries for its reply; `T`: what it resolves with. */
export interface ReplyRules<C, T> {
  /**
   * Where the payload of `h`, the reply to a request made with `into` and
   * `context`, lands: an array exactly h.bytes - 32 bytes long (usually
   * `into`), or null for a fresh buffer. Throws ProtocolError when `h` is no
   * valid reply to that request (the connection is then the owner's to fail).
   */
  land(h: Header, into: Uint8Array | null, context: C): Uint8Array | null;
  /** The value the request resolves with; throws the error it rejects with. */
  settle(h: Header, payload: Uint8Array, context: C): T;
}

/** Writes one frame: `h` carries the request's id. A promise, when it waits for room, rejects only if the connection is lost. */
export type SendFrame = (type: number, h: HeaderFields, payload: Uint8Array | undefined) => void | Promise<void>;

interface Pending<C, T> {
  resolve(value: T): void;
  reject(e: Error): void;
  into: Uint8Array | null;
  context: C;
}

export class RequestChannel<C, T> implements FrameHandler {
  readonly #protocol: FrameProtocol;
  readonly #send: SendFrame;
  readonly #rules: ReplyRules<C, T>;
  readonly #pending = new Map<number, Pending<C, T>>();
  #nextId = 1;
  #error: Error | null = null;

  constructor(protocol: FrameProtocol, send: SendFrame, rules: ReplyRules<C, T>) {
    this.#protocol = protocol;
    this.#send = send;
    this.#rules = rules;
  }

  /** The error that ended the channel (it sticks), or null while it works. */
  get error(): Error | null {
    return this.#error;
  }

  /** Requests awaiting their replies. */
  get waiting(): number {
    return this.#pending.size;
  }

  /**
   * Sends a request and resolves with what its reply settles it with. `into`:
   * where the reply's payload should land (ReplyRules.land decides).
   */
  request(type: number, h: Omit<HeaderFields, 'id'>, payload: Uint8Array | undefined, into: Uint8Array | null, context: C): Promise<T> {
    if (this.#error !== null) return Promise.reject(this.#error);
    const id = this.#nextId;
    this.#nextId = id === 0xffffffff ? 1 : id + 1;
    const reply = new Promise<T>((resolve, reject) => this.#pending.set(id, { resolve, reject, into, context }));
    let sent: void | Promise<void>;
    try {
      sent = this.#send(type, { ...h, id }, payload);
    } catch (e) {
      this.#pending.delete(id);
      return Promise.reject(e as Error);
    }
    if (sent !== undefined) sent.catch((e: unknown) => this.fail(e as Error));
    return reply;
  }

  /** The connection is lost: every waiting request rejects with `e`, and so does every later one. Only the first error counts. */
  fail(e: Error): void {
    if (this.#error !== null) return;
    this.#error = e;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  /**
   * The owner closes the connection: later requests reject with `e` (unless
   * the channel failed before); requests in flight get no reply and are left
   * unsettled.
   */
  close(e: Error): void {
    this.#error ??= e;
  }

  /** FrameHandler: a reply's header arrived. */
  begin(h: Header): Uint8Array | null {
    const p = this.#pending.get(h.id);
    if (p === undefined) throw new ProtocolError(`${this.#protocol.typeName(h.type)} ${h.id} answers no request`);
    return this.#rules.land(h, p.into, p.context);
  }

  /** FrameHandler: a reply is complete; settles its request. */
  end(h: Header, payload: Uint8Array): void {
    const p = this.#pending.get(h.id);
    if (p === undefined) return; // failed while its payload arrived
    this.#pending.delete(h.id);
    let value: T;
    try {
      value = this.#rules.settle(h, payload, p.context);
    } catch (e) {
      p.reject(e as Error);
      return;
    }
    p.resolve(value);
  }
}
