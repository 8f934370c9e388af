/**
 * Message rings between the ranks of a node: one single-producer,
 * single-consumer byte ring per ordered pair in the control segment.
 *
 * A record is a 16-byte header and its payload, 8-byte aligned:
 *   +0 sequence number (stored last: it publishes the record)
 *   +4 record bytes, or -(bytes to the ring's end) for padding
 *   +8 tag     +12 kind | dtype << 4 | (alignment padding) << 8
 * The receiver polls the sequence word where the next record will start, as
 * Open MPI's fast boxes do: flag and data share cache lines, so a small
 * message costs about one line transfer. The producer zeroes the header word
 * after each record it writes, so stale bytes of an earlier lap can never pass
 * for the expected sequence number. The consumer's position (head) lives in
 * its own line and is read by the producer only when the ring looks full.
 *
 * Small messages are copied in and out (eager). Large ones send a
 * rendezvous record holding the sender's address; the receiver reads the
 * payload straight into its destination with process_vm_readv (one copy) and
 * bumps the pair's done counter, which the sender waits on.
 */
import { native } from '../../native/index.js';
import { moveCtor } from '../../runtime/codec.js';
import type { TypedArray } from '../../runtime/types.js';
import { WAKE_MESSAGE, type ControlSegment } from './control.js';

export const KIND_EAGER = 1;
export const KIND_RENDEZVOUS = 2;
const HEADER = 16;
/** Rendezvous payload: address (8 bytes) and length (4). */
const RTS_PAYLOAD = 12;

/** What the receiving side hands a decoded record to. */
export interface RecordSink {
  /**
   * Eager payload in ring memory, at `byteOffset` of `view` (a view of the
   * payload's own element type over the whole segment): copy it out before returning.
   */
  eager(source: number, tag: number, dtype: number, view: TypedArray, byteOffset: number, byteLength: number): void;
  /** Rendezvous: `pull(dst)` reads the payload into dst (length `byteLength`). */
  rendezvous(source: number, tag: number, dtype: number, byteLength: number, pull: (dst: TypedArray) => void): void;
}

export class NodeQueues {
  readonly #ctrl: ControlSegment;
  readonly #i32: Int32Array;
  readonly #me: number;
  readonly #mask: number;
  readonly #cap: number;
  /** Producer: our position and next sequence number per destination. */
  readonly #tail: Int32Array;
  readonly #seqOut: Int32Array;
  /** The consumer's head as last read: reloaded only when the ring looks full. */
  readonly #headSeen: Int32Array;
  /** Consumer: our position and the sequence number expected per source. */
  readonly #head: Int32Array;
  readonly #seqIn: Int32Array;
  /** Rendezvous records sent per destination (compared with its done counter). */
  readonly #rtsSent: Int32Array;
  readonly #pids: Int32Array;
  /** Views of the segment by element type, so that payloads move with TypedArray.set/slice. */
  readonly #views = new Map<unknown, TypedArray>();
  // scratch for the rendezvous address, reused
  readonly #addr = new BigInt64Array(1);
  readonly #addrWords = new Int32Array(this.#addr.buffer);

  constructor(ctrl: ControlSegment, me: number, pids: readonly number[]) {
    this.#ctrl = ctrl;
    this.#i32 = ctrl.i32;
    this.#me = me;
    this.#cap = ctrl.ringBytes;
    this.#mask = ctrl.ringBytes - 1;
    const n = ctrl.nlocal;
    this.#tail = new Int32Array(n);
    this.#seqOut = new Int32Array(n).fill(1);
    this.#headSeen = new Int32Array(n);
    this.#head = new Int32Array(n);
    this.#seqIn = new Int32Array(n).fill(1);
    this.#rtsSent = new Int32Array(n);
    this.#pids = Int32Array.from(pids);
  }

  /** The largest record payload a ring takes. */
  get maxEager(): number {
    return this.#cap / 4 - HEADER;
  }

  #view(Ctor: { new (b: ArrayBuffer): TypedArray }): TypedArray {
    let v = this.#views.get(Ctor);
    if (v === undefined) {
      v = new Ctor(this.#ctrl.buffer);
      this.#views.set(Ctor, v);
    }
    return v;
  }

  /**
   * Reserves a record of `payload` bytes in the ring to `dest` (padding to
   * the end first if it does not fit there); returns the byte offset of its
   * header in the control segment, or -1 when the ring has no room now.
   * Room includes the next header word, which the record's commit zeroes.
   */
  #reserve(dest: number, payload: number): number {
    const ctrl = this.#ctrl;
    const size = (HEADER + payload + 7) & ~7;
    const tail = this.#tail[dest]!;
    const pos = tail & this.#mask;
    const toEnd = this.#cap - pos;
    const need = (toEnd < size ? toEnd + size : size) + 8;
    if (this.#cap - ((tail - this.#headSeen[dest]!) | 0) < need) {
      // Looks full: see how far the consumer has got.
      this.#headSeen[dest] = Atomics.load(this.#i32, ctrl.headIndex(this.#me, dest));
      if (this.#cap - ((tail - this.#headSeen[dest]!) | 0) < need) return -1;
    }
    const base = ctrl.ringOffset(this.#me, dest);
    if (toEnd < size) {
      // Padding record to the ring's end; the record starts over at 0.
      const w = (base + pos) >> 2;
      this.#i32[w + 1] = -toEnd;
      this.#i32[base >> 2] = 0;
      Atomics.store(this.#i32, w, this.#nextSeq(dest));
      this.#tail[dest] = (tail + toEnd) | 0;
      return base;
    }
    return base + pos;
  }

  #nextSeq(dest: number): number {
    const s = this.#seqOut[dest]!;
    this.#seqOut[dest] = s === 0x7fffffff ? 1 : s + 1; // never 0: 0 means "nothing here"
    return s;
  }

  /** Zeroes the next header word, then publishes the record and tells `dest`. */
  #commit(dest: number, at: number, payload: number, meta: number): void {
    const size = (HEADER + payload + 7) & ~7;
    const i32 = this.#i32;
    const w = at >> 2;
    i32[w + 1] = size;
    i32[w + 3] = meta | ((size - HEADER - payload) << 8);
    const tail = (this.#tail[dest]! + size) | 0;
    this.#tail[dest] = tail;
    const base = this.#ctrl.ringOffset(this.#me, dest);
    i32[(base + (tail & this.#mask)) >> 2] = 0;
    Atomics.store(i32, w, this.#nextSeq(dest));
    this.#ctrl.ring(dest, WAKE_MESSAGE);
  }

  /** Copies a message into the ring to `dest`; false when it has no room now. */
  trySendEager(dest: number, tag: number, dtype: number, payload: TypedArray): boolean {
    const bytes = payload.byteLength;
    const at = this.#reserve(dest, bytes);
    if (at < 0) return false;
    this.#i32[(at >> 2) + 2] = tag;
    if (bytes > 0) {
      const view = this.#view(moveCtor(dtype));
      (view as Float64Array).set(payload as Float64Array, (at + HEADER) / view.BYTES_PER_ELEMENT);
    }
    this.#commit(dest, at, bytes, KIND_EAGER | (dtype << 4));
    return true;
  }

  /**
   * Posts a rendezvous for `bytes` (which must stay untouched until
   * rendezvousDone() says so); returns its sequence number, or -1 when full.
   */
  trySendRendezvous(dest: number, tag: number, dtype: number, bytes: TypedArray): number {
    const at = this.#reserve(dest, RTS_PAYLOAD);
    if (at < 0) return -1;
    const w = at >> 2;
    this.#i32[w + 2] = tag;
    this.#addr[0] = native().addressOf(bytes);
    this.#i32[w + 4] = this.#addrWords[0]!;
    this.#i32[w + 5] = this.#addrWords[1]!;
    this.#i32[w + 6] = bytes.byteLength;
    this.#commit(dest, at, RTS_PAYLOAD, KIND_RENDEZVOUS | (dtype << 4));
    const seq = (this.#rtsSent[dest]! + 1) | 0;
    this.#rtsSent[dest] = seq;
    return seq;
  }

  rendezvousDone(dest: number, seq: number): boolean {
    return ((Atomics.load(this.#i32, this.#ctrl.rtsDoneIndex(this.#me, dest)) - seq) | 0) >= 0;
  }

  /** Whether `source` has a record waiting for us. */
  pending(source: number): boolean {
    const at = this.#ctrl.ringOffset(source, this.#me) + (this.#head[source]! & this.#mask);
    return Atomics.load(this.#i32, at >> 2) === this.#seqIn[source];
  }

  /** Takes one record from `source` into `sink`; false when there is none. */
  poll(source: number, sink: RecordSink): boolean {
    const ctrl = this.#ctrl;
    const i32 = this.#i32;
    const base = ctrl.ringOffset(source, this.#me);
    let head = this.#head[source]!;
    let w = (base + (head & this.#mask)) >> 2;
    if (Atomics.load(i32, w) !== this.#seqIn[source]) return false;
    let size = i32[w + 1]!;
    if (size < 0) {
      // padding: the record is at the start of the ring
      this.#nextIn(source);
      head = (head - size) | 0;
      w = base >> 2;
      if (Atomics.load(i32, w) !== this.#seqIn[source]) {
        this.#head[source] = head;
        return false;
      }
      size = i32[w + 1]!;
    }
    const tag = i32[w + 2]!;
    const meta = i32[w + 3]!;
    const dtype = (meta >> 4) & 0xf;
    if ((meta & 0xf) === KIND_EAGER) {
      const length = size - HEADER - (meta >> 8);
      sink.eager(source, tag, dtype, this.#view(moveCtor(dtype)), (w << 2) + HEADER, length);
    } else {
      this.#addrWords[0] = i32[w + 4]!;
      this.#addrWords[1] = i32[w + 5]!;
      const addr = this.#addr[0]!;
      const pid = this.#pids[source]!;
      sink.rendezvous(source, tag, dtype, i32[w + 6]!, (dst) => {
        native().cmaRead(pid, addr, dst);
      });
      Atomics.add(i32, ctrl.rtsDoneIndex(source, this.#me), 1);
    }
    this.#nextIn(source);
    head = (head + size) | 0;
    this.#head[source] = head;
    Atomics.store(i32, ctrl.headIndex(source, this.#me), head);
    // The sender may be asleep, waiting for room or for its rendezvous.
    ctrl.ring(source, WAKE_MESSAGE);
    return true;
  }

  #nextIn(source: number): void {
    const s = this.#seqIn[source]!;
    this.#seqIn[source] = s === 0x7fffffff ? 1 : s + 1;
  }
}
