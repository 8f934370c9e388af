/**
 * Message rings between the ranks of a node: one single-producer,
 * single-consumer byte ring per ordered pair in the control segment. A record
 * is a 16-byte header and its payload, 8-byte aligned:
 *   +0 record bytes (negative: padding to the ring's end)   +4 tag
 *   +8 kind | dtype << 8                                   +12 payload bytes
 * Small messages are copied in and out (eager). Large ones send a
 * rendezvous record holding the sender's address; the receiver reads the
 * payload straight into its destination with process_vm_readv (a single
 * copy) and bumps the pair's done counter, which the sender waits on.
 */
import { native } from '../../native/index.js';
import type { ControlSegment } from './control.js';

export const KIND_EAGER = 1;
export const KIND_RENDEZVOUS = 2;
const HEADER = 16;

/** What the receiving side hands a decoded record to. */
export interface RecordSink {
  /** Eager payload in ring memory: copy it out before returning. */
  eager(source: number, tag: number, dtype: number, bytes: Uint8Array): void;
  /** Rendezvous: `pull(dst)` reads the payload into dst (length `byteLength`). */
  rendezvous(source: number, tag: number, dtype: number, byteLength: number, pull: (dst: Uint8Array) => void): void;
}

export class NodeQueues {
  readonly #ctrl: ControlSegment;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #me: number;
  readonly #mask: number;
  readonly #cap: number;
  /** Our producer position per destination and consumer position per source. */
  readonly #tail: Int32Array;
  readonly #head: Int32Array;
  /** Rendezvous records sent per destination (compared with its done counter). */
  readonly #rtsSent: Int32Array;
  readonly #pids: Int32Array;
  // scratch for the rendezvous address, reused
  readonly #addr = new BigInt64Array(1);
  readonly #addrWords = new Int32Array(this.#addr.buffer);

  constructor(ctrl: ControlSegment, me: number, pids: readonly number[]) {
    this.#ctrl = ctrl;
    this.#i32 = ctrl.i32;
    this.#u8 = ctrl.u8;
    this.#me = me;
    this.#cap = ctrl.ringBytes;
    this.#mask = ctrl.ringBytes - 1;
    const n = ctrl.nlocal;
    this.#tail = new Int32Array(n);
    this.#head = new Int32Array(n);
    this.#rtsSent = new Int32Array(n);
    this.#pids = Int32Array.from(pids);
    for (let p = 0; p < n; p++) {
      this.#tail[p] = Atomics.load(this.#i32, ctrl.tailIndex(me, p));
      this.#head[p] = Atomics.load(this.#i32, ctrl.headIndex(p, me));
      this.#rtsSent[p] = Atomics.load(this.#i32, ctrl.rtsDoneIndex(me, p));
    }
  }

  /** The largest record payload a ring takes. */
  get maxEager(): number {
    return this.#cap / 4 - HEADER;
  }

  /**
   * Reserves a record of `payload` bytes in the ring to `dest`; returns the
   * byte offset of its header in the control segment, or -1 when full.
   */
  #reserve(dest: number, payload: number): number {
    const ctrl = this.#ctrl;
    const size = (HEADER + payload + 7) & ~7;
    let tail = this.#tail[dest]!;
    const head = Atomics.load(this.#i32, ctrl.headIndex(this.#me, dest));
    let free = this.#cap - ((tail - head) | 0);
    const pos = tail & this.#mask;
    const toEnd = this.#cap - pos;
    const base = ctrl.ringOffset(this.#me, dest);
    if (toEnd < size) {
      // Pad to the end and start over at the beginning of the ring.
      if (free < toEnd + size) return -1;
      this.#i32[(base + pos) >> 2] = -toEnd;
      tail = (tail + toEnd) | 0;
      free -= toEnd;
    } else if (free < size) {
      return -1;
    }
    this.#tail[dest] = tail;
    return base + (tail & this.#mask);
  }

  #commit(dest: number, at: number, payload: number): void {
    const size = (HEADER + payload + 7) & ~7;
    this.#i32[at >> 2] = size;
    const tail = (this.#tail[dest]! + size) | 0;
    this.#tail[dest] = tail;
    Atomics.store(this.#i32, this.#ctrl.tailIndex(this.#me, dest), tail);
    this.#ctrl.ring(dest);
  }

  /** Copies a message into the ring to `dest`; false when it has no room now. */
  trySendEager(dest: number, tag: number, dtype: number, bytes: Uint8Array): boolean {
    const at = this.#reserve(dest, bytes.byteLength);
    if (at < 0) return false;
    const w = at >> 2;
    this.#i32[w + 1] = tag;
    this.#i32[w + 2] = KIND_EAGER | (dtype << 8);
    this.#i32[w + 3] = bytes.byteLength;
    this.#u8.set(bytes, at + HEADER);
    this.#commit(dest, at, bytes.byteLength);
    return true;
  }

  /**
   * Posts a rendezvous for `bytes` (which must stay untouched until
   * rendezvousDone() says so); returns its sequence number, or -1 when full.
   */
  trySendRendezvous(dest: number, tag: number, dtype: number, bytes: Uint8Array): number {
    const at = this.#reserve(dest, 8);
    if (at < 0) return -1;
    const w = at >> 2;
    this.#i32[w + 1] = tag;
    this.#i32[w + 2] = KIND_RENDEZVOUS | (dtype << 8);
    this.#i32[w + 3] = bytes.byteLength;
    this.#addr[0] = native().addressOf(bytes);
    this.#i32[w + 4] = this.#addrWords[0]!;
    this.#i32[w + 5] = this.#addrWords[1]!;
    this.#commit(dest, at, 8);
    const seq = (this.#rtsSent[dest]! + 1) | 0;
    this.#rtsSent[dest] = seq;
    return seq;
  }

  rendezvousDone(dest: number, seq: number): boolean {
    return ((Atomics.load(this.#i32, this.#ctrl.rtsDoneIndex(this.#me, dest)) - seq) | 0) >= 0;
  }

  /** Whether `source` has a record waiting for us. */
  pending(source: number): boolean {
    return Atomics.load(this.#i32, this.#ctrl.tailIndex(source, this.#me)) !== this.#head[source];
  }

  /** Takes one record from `source` into `sink`; false when there is none. */
  poll(source: number, sink: RecordSink): boolean {
    const ctrl = this.#ctrl;
    const i32 = this.#i32;
    let head = this.#head[source]!;
    const tail = Atomics.load(i32, ctrl.tailIndex(source, this.#me));
    if (tail === head) return false;
    const base = ctrl.ringOffset(source, this.#me);
    let at = base + (head & this.#mask);
    let size = i32[at >> 2]!;
    if (size < 0) {
      head = (head - size) | 0;
      at = base + (head & this.#mask);
      size = i32[at >> 2]!;
    }
    const w = at >> 2;
    const tag = i32[w + 1]!;
    const meta = i32[w + 2]!;
    const length = i32[w + 3]!;
    const dtype = meta >> 8;
    if ((meta & 0xff) === KIND_EAGER) {
      sink.eager(source, tag, dtype, this.#u8.subarray(at + HEADER, at + HEADER + length));
    } else {
      this.#addrWords[0] = i32[w + 4]!;
      this.#addrWords[1] = i32[w + 5]!;
      const addr = this.#addr[0]!;
      const pid = this.#pids[source]!;
      sink.rendezvous(source, tag, dtype, length, (dst) => {
        native().cmaRead(pid, addr, dst);
      });
      Atomics.add(i32, ctrl.rtsDoneIndex(source, this.#me), 1);
      ctrl.ring(source);
    }
    head = (head + size) | 0;
    this.#head[source] = head;
    Atomics.store(i32, ctrl.headIndex(source, this.#me), head);
    // The sender may be waiting for room.
    ctrl.ring(source);
    return true;
  }
}
