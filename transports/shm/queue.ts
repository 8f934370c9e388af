/**
 * Message queues between the ranks of a node: one multi-producer,
 * single-consumer FIFO per receiver in the control segment (Open MPI vader's
 * per-receiver FIFO), so a node's queue memory is O(p), not O(p^2) (issue 13:
 * one ring per ordered pair was 65,000 rings and 4 GiB at 255 ranks).
 *
 * The ring is cut into 64-byte cells; a record is a header and its payload,
 * starting at a cell boundary and rounded up to whole cells:
 *   +0  record bytes (nonzero: it publishes the record; negative: padding to the ring's end)
 *   +4  tag    +8 kind | dtype << 4 | producer << 8    +12 payload bytes
 *   +16 origin + 1 (the world rank a relayed message comes from; 0: the producer itself)
 *   +24 a first fragment's message length (low, high u32)      +32 payload
 * The producer is the participant that wrote the record (a local rank, or the
 * node agent relaying from another node with the origin).
 *
 * Producers reserve room with a compare-exchange on the queue's tail (its own
 * cache line), write header and payload, then store the first word. The
 * consumer polls the word at its head: flag and data share a cache line, so a
 * small message costs about one line transfer, as Open MPI's fast boxes. Once
 * it has taken a record it zeroes the first word of every cell the record
 * covered, then publishes its head: every cell boundary is zero unless a record
 * was published there, so no stale payload of an earlier lap can pass for a
 * record, whatever a producer wrote. A record waits for the ones reserved
 * before it (the consumer reads in reservation order); each producer's records
 * are in its own call order, so messages between two ranks never overtake.
 *
 * Small messages are one record. Larger ones stream as fragments (a first
 * record with the total length, then continuations), so that the sender
 * copies fragment k while the receiver copies out fragment k-1; fragments of
 * different producers interleave, and the receiver reassembles per producer
 * (a producer finishes posting one message to a queue before it starts the
 * next). Measured on the reference machine, two pipelined memcpys beat one
 * process_vm_readv at every size (1 MiB: 23 us per memcpy, 81 us for CMA).
 *
 * A producer that finds the queue full sets the queue's "want" word; the
 * consumer, after it moved its head, clears it and rings the participants
 * sleeping for messages, so a blocked sender wakes when room appears.
 */
import { DTYPE_BYTES, moveCtor, ON_HEAP_BYTES } from '../../core/codec.js';
import { MprunError } from '../../core/errors.js';
import type { TypedArray } from '../../core/types.js';
import { WAKE_MESSAGE, type ControlSegment } from './control.js';
import { TypedViews } from './views.js';
import { native, type NativeBinding, type QueueHandle } from '../../native/index.js';

/** NodeQueues.recvInto's results besides a length. */
export const RECV_NOT_THIS = -1;
export const RECV_EMPTY = -2;

export const KIND_EAGER = 1;
export const KIND_FIRST = 2;
export const KIND_NEXT = 3;
const HEADER = 32;
const CELL = 64;
const CELL_WORDS = CELL / 4;

/** Bytes of ring a record of `payload` bytes takes. */
export function recordBytes(payload: number): number {
  return (HEADER + payload + CELL - 1) & ~(CELL - 1);
}

/** What the receiving side hands a decoded record to. */
export interface RecordSink {
  /**
   * Eager payload in ring memory, at `byteOffset` of `view` (a view of the
   * payload's own element type over the whole segment): copy it out before
   * returning. `producer` is the participant that wrote it.
   */
  eager(producer: number, origin: number, tag: number, dtype: number, view: TypedArray, byteOffset: number, byteLength: number): void;
  /** The first fragment of a message of `totalBytes`; same memory rules as eager(). */
  first(producer: number, origin: number, tag: number, dtype: number, totalBytes: number, view: TypedArray, byteOffset: number, byteLength: number): void;
  /** A continuation fragment of the message `first` began from the same producer. */
  next(producer: number, view: TypedArray, byteOffset: number, byteLength: number): void;
}

/** A message being posted: `offset` is how many of its bytes are in the queue already. */
export interface OutgoingMessage {
  tag: number;
  dtype: number;
  payload: TypedArray;
  offset: number;
}

export class NodeQueues {
  readonly #ctrl: ControlSegment;
  readonly #i32: Int32Array;
  readonly #me: number;
  readonly #mask: number;
  readonly #cap: number;
  /** Producer: each destination's head as last read (reloaded only when its queue looks full). */
  readonly #headSeen: Int32Array;
  /** Consumer: [0] our position (shared with the native side), and where our queue's words are. */
  readonly #state = new Int32Array(1);
  readonly #base: number;
  readonly #headIndex: number;
  readonly #wantIndex: number;
  /** Views of the segment by element type, so that payloads move with TypedArray.set/slice. */
  readonly #views: TypedViews;
  readonly #native: NativeBinding;
  /** The eager paths in native code, over the same words. */
  readonly #queues: QueueHandle;
  /** Where small payloads pass to and from native code (see trySendEager). */
  readonly #staging = new TypedViews(new ArrayBuffer(ON_HEAP_BYTES));
  /** Where the native staged receive puts its message's source and tag. */
  readonly #stagedOut = new Int32Array(2);
  /** The staged calls' arguments (native/queue.cc reads them), and the calls. */
  readonly #args = new Int32Array(6);
  readonly #sendStaged: () => boolean;
  readonly #recvStaged: () => number;
  constructor(ctrl: ControlSegment, me: number) {
    this.#ctrl = ctrl;
    this.#i32 = ctrl.i32;
    this.#views = new TypedViews(ctrl.buffer);
    this.#me = me;
    this.#cap = ctrl.ringBytes;
    this.#mask = ctrl.ringBytes - 1;
    this.#headSeen = new Int32Array(ctrl.participants);
    this.#base = ctrl.ringOffset(me);
    this.#headIndex = ctrl.headIndex(me);
    this.#wantIndex = ctrl.wantIndex(me);
    this.#state[0] = Atomics.load(this.#i32, this.#headIndex);
    const per = (f: (r: number) => number): Int32Array => Int32Array.from({ length: ctrl.participants }, (_, r) => f(r));
    this.#native = native();
    const q = this.#native.queueOpen(ctrl.i32, me, ctrl.ringBytes, per((r) => ctrl.ringOffset(r)), per((r) => ctrl.tailIndex(r)), per((r) => ctrl.headIndex(r)), per((r) => ctrl.wantIndex(r)), per((r) => ctrl.sleepingIndex(r)), per((r) => ctrl.doorIndex(r)), this.#headSeen, this.#state, this.#staging.buffer, this.#stagedOut, this.#args);
    this.#queues = q.handle;
    this.#sendStaged = q.sendStaged;
    this.#recvStaged = q.recvStaged;
  }

  /** The world rank of each local participant (the receiving side matches sources by them). */
  worldRanks(worldOfLocal: readonly number[]): void {
    this.#native.queueWorldRanks(this.#queues, Int32Array.from(worldOfLocal));
  }

  /**
   * The receive fast path (native/queue.cc): polls our queue for up to
   * `spinNs`, then sleeps on our doorbell for up to `dozeNs` (a synchronous
   * receive's; 0: not at all), and takes the record at its head when it is an eager message of
   * `dtype` that fits `into` and that a receive of (source, tag) matches (-1:
   * any). Returns its bytes (out[0], out[1]: its source and tag), RECV_NOT_THIS
   * when the head record is something else (poll() must take it), or
   * RECV_EMPTY when nothing arrived.
   */
  recvInto(into: TypedArray, dtype: number, source: number, tag: number, spinNs: number, dozeNs: number, out: Int32Array): number {
    // Sizes from length and the type code: V8 does not inline byteLength (codec.ts, typedCode).
    const bpe = DTYPE_BYTES[dtype]!;
    const room = into.length * bpe;
    if (room > ON_HEAP_BYTES) return this.#native.queueRecvInto(this.#queues, into, room, dtype, source, tag, spinNs, dozeNs, out);
    // As in trySendEager: through our staging array, then element by element (no allocation).
    const stage = this.#staging.of(moveCtor(dtype));
    const a = this.#args;
    a[0] = room;
    a[1] = dtype;
    a[2] = source;
    a[3] = tag;
    // Nanoseconds in an int32: at most 2.1 s (a poll, not a wait); NaN or less polls once.
    a[4] = spinNs > 0x7fffffff ? 0x7fffffff : spinNs;
    a[5] = dozeNs > 0x7fffffff ? 0x7fffffff : dozeNs;
    const n = this.#recvStaged();
    if (n < 0) return n;
    for (let i = 0, end = n / bpe; i < end; i++) (into as Float64Array)[i] = (stage as Float64Array)[i]!;
    out[0] = this.#stagedOut[0]!;
    out[1] = this.#stagedOut[1]!;
    return n;
  }

  /** The largest record payload a queue takes. */
  get maxEager(): number {
    return this.#cap / 4 - HEADER;
  }

  /** The bytes of message data in one fragment (a multiple of 8, so every element type divides it). */
  get fragmentBytes(): number {
    return (this.#cap / 4 - HEADER) & ~7;
  }

  /**
   * Reserves a record of `payload` bytes in the queue of `dest` (padding to
   * the ring's end first if it does not fit there); returns the byte offset of
   * its header in the control segment, or -1 when the queue has no room now.
   */
  #reserve(dest: number, payload: number): number {
    const ctrl = this.#ctrl;
    const i32 = this.#i32;
    const size = recordBytes(payload);
    const cap = this.#cap;
    const tailIndex = ctrl.tailIndex(dest);
    for (;;) {
      const tail = Atomics.load(i32, tailIndex);
      const pos = tail & this.#mask;
      const toEnd = cap - pos;
      const need = toEnd < size ? toEnd + size : size;
      let used = (tail - this.#headSeen[dest]!) | 0;
      if (used < 0 || cap - used < need) {
        // Looks full: see how far the consumer has got.
        this.#headSeen[dest] = Atomics.load(i32, ctrl.headIndex(dest));
        used = (tail - this.#headSeen[dest]!) | 0;
        if (used < 0) continue; // the tail moved on meanwhile: reread it
        if (cap - used < need) {
          // Ask the consumer to wake us when it makes room, then look once more
          // (it publishes its head before it reads this word).
          Atomics.store(i32, ctrl.wantIndex(dest), 1);
          this.#headSeen[dest] = Atomics.load(i32, ctrl.headIndex(dest));
          if (cap - ((tail - this.#headSeen[dest]!) | 0) < need) return -1;
          continue;
        }
      }
      if (Atomics.compareExchange(i32, tailIndex, tail, (tail + need) | 0) !== tail) continue;
      const base = ctrl.ringOffset(dest);
      if (toEnd < size) {
        // Padding record to the ring's end; the record starts over at 0.
        Atomics.store(i32, (base + pos) >> 2, -toEnd);
        return base;
      }
      return base + pos;
    }
  }

  /** Fills in the header, publishes the record and tells `dest`. */
  #commit(dest: number, at: number, payload: number, meta: number, origin: number): void {
    const i32 = this.#i32;
    const w = at >> 2;
    i32[w + 2] = meta | (this.#me << 8);
    i32[w + 3] = payload;
    i32[w + 4] = origin + 1;
    Atomics.store(i32, w, recordBytes(payload));
    this.#ctrl.ring(dest, WAKE_MESSAGE);
  }

  /** Copies a message into the queue of `dest` (native/queue.cc: #reserve and #commit as here); false when it has no room now. */
  trySendEager(dest: number, tag: number, dtype: number, payload: TypedArray, origin = -1): boolean {
    const bytes = payload.length * DTYPE_BYTES[dtype]!;
    if (bytes <= ON_HEAP_BYTES) {
      // Small arrays made in JavaScript live on V8's heap; handing one to native code would move it
      // off (a backing store allocated): a copy into our own staging array costs less.
      const stage = this.#staging.of(moveCtor(dtype));
      (stage as Float64Array).set(payload as Float64Array);
      const a = this.#args;
      a[0] = dest;
      a[1] = tag;
      a[2] = dtype;
      a[3] = origin;
      a[4] = bytes;
      return this.#sendStaged();
    }
    return this.#native.queueSendEager(this.#queues, dest, tag, dtype, payload, origin, bytes);
  }

  /**
   * Copies bytes [offset, offset + length) of `payload` into the queue of
   * `dest` as one fragment of a message of `payload.byteLength` bytes (the
   * first when offset is 0); false when the queue has no room now.
   */
  trySendFragment(dest: number, tag: number, dtype: number, payload: TypedArray, offset: number, length: number, origin = -1): boolean {
    const first = offset === 0;
    const at = this.#reserve(dest, length);
    if (at < 0) return false;
    const w = at >> 2;
    this.#i32[w + 1] = tag;
    if (first) {
      this.#i32[w + 6] = payload.byteLength % 0x100000000;
      this.#i32[w + 7] = Math.floor(payload.byteLength / 0x100000000);
    }
    const view = this.#views.of(moveCtor(dtype));
    const bpe = view.BYTES_PER_ELEMENT;
    (view as Float64Array).set((payload as Float64Array).subarray(offset / bpe, (offset + length) / bpe), (at + HEADER) / bpe);
    this.#commit(dest, at, length, (first ? KIND_FIRST : KIND_NEXT) | (dtype << 4), origin);
    return true;
  }

  /**
   * Posts as much of `m` into the queue of `dest` as fits now: one record
   * when it is at most `eagerLimit` bytes, else fragments from `m.offset` on
   * (which it advances). Returns whether the whole message is in the queue.
   */
  tryPost(dest: number, m: OutgoingMessage, eagerLimit: number, origin = -1): boolean {
    const total = m.payload.byteLength;
    if (total <= eagerLimit) return this.trySendEager(dest, m.tag, m.dtype, m.payload, origin);
    const step = this.fragmentBytes;
    while (m.offset < total) {
      const length = Math.min(step, total - m.offset);
      if (!this.trySendFragment(dest, m.tag, m.dtype, m.payload, m.offset, length, origin)) return false;
      m.offset += length;
    }
    return true;
  }

  /** Whether a record waits in our queue. */
  pending(): boolean {
    return Atomics.load(this.#i32, (this.#base + (this.#state[0]! & this.#mask)) >> 2) !== 0;
  }

  /** Takes the next record of our queue into `sink`; false when there is none. */
  #corrupt(what: string, size: number, head: number, length?: number): never {
    throw new MprunError('ERR_MPRUN_PROTOCOL', `local rank ${this.#me}'s message queue holds a damaged ${what} (${size} bytes${length === undefined ? '' : `, payload ${length}`} at offset ${head & this.#mask} of a ${this.#cap}-byte ring): a process of the job wrote over the node's segment`);
  }

  poll(sink: RecordSink): boolean {
    const i32 = this.#i32;
    const base = this.#base;
    let head = this.#state[0]!;
    let w = (base + (head & this.#mask)) >> 2;
    let size = Atomics.load(i32, w);
    if (size === 0) return false;
    if (size < 0) {
      // padding: the record is at the start of the ring
      if (-size !== this.#cap - (head & this.#mask)) this.#corrupt('padding', size, head);
      i32[w] = 0;
      head = (head - size) | 0;
      w = base >> 2;
      size = Atomics.load(i32, w);
      if (size === 0) {
        this.#advance(head);
        return false;
      }
    }
    const tag = i32[w + 1]!;
    const meta = i32[w + 2]!;
    const length = i32[w + 3]!;
    // Sizes another process wrote: checked before they steer a copy or the zeroing below.
    if (size % CELL !== 0 || size > this.#cap - (head & this.#mask) || length < 0 || length > size - HEADER) this.#corrupt('record', size, head, length);
    const origin = i32[w + 4]! - 1;
    const dtype = (meta >> 4) & 0xf;
    const kind = meta & 0xf;
    const producer = meta >>> 8;
    const view = this.#views.of(moveCtor(dtype));
    const data = (w << 2) + HEADER;
    if (kind === KIND_EAGER) {
      sink.eager(producer, origin, tag, dtype, view, data, length);
    } else if (kind === KIND_FIRST) {
      const total = (i32[w + 6]! >>> 0) + i32[w + 7]! * 0x100000000;
      sink.first(producer, origin, tag, dtype, total, view, data, length);
    } else {
      sink.next(producer, view, data, length);
    }
    // Every cell boundary of the record back to zero, then the room is the producers'.
    const end = w + (size >> 2);
    for (let c = w; c < end; c += CELL_WORDS) i32[c] = 0;
    this.#advance((head + size) | 0);
    return true;
  }

  #advance(head: number): void {
    this.#state[0] = head;
    Atomics.store(this.#i32, this.#headIndex, head);
    // A producer may be asleep, waiting for room.
    if (Atomics.load(this.#i32, this.#wantIndex) !== 0 && Atomics.exchange(this.#i32, this.#wantIndex, 0) !== 0) {
      const ctrl = this.#ctrl;
      for (let r = 0; r < ctrl.participants; r++) if (r !== this.#me) ctrl.ring(r, WAKE_MESSAGE);
    }
  }
}
