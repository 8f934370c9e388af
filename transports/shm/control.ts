/**
 * The node control segment: one memfd per node, made by the launcher (or the
 * node agent) and inherited by every local rank. It holds what must never live
 * in XPMEM-attached memory (futexes fail there, and an attachment dies with its
 * owner): the job's abort word, each rank's doorbell (a futex word every event
 * for that rank increments), barrier flags, and one message queue per
 * participant: a FIFO every other participant writes into (multi-producer,
 * single-consumer; transports/xpmem/queue.ts). The participants are the local
 * ranks and, last, the node agent (the gateway): it delivers messages from
 * other nodes into each rank's queue, and reads each rank's heap location from
 * its block. Everything is O(p) in the participants (issue 13: one ring per
 * ordered pair was 4 GiB at 255 ranks).
 *
 * Layout (bytes):
 *   [0, 4096)                header: magic, version, nlocal, queue bytes, abort word, abort text
 *   RANKS  + stride * r      participant r: doorbell, sleeping, pid, heap segid and bytes (a
 *                            cache line), then per team slot a cache line with the rank's ack
 *                            and data words for that team
 *   QUEUES + 128 * r         queue r's control: producers' tail (a cache line of its own), then
 *                            the consumer's head and the "a producer waits for room" word
 *   RINGS  + ring * r        queue r's data              (p = nlocal + 1 participants)
 */
import { native } from '../../native/index.js';

const MAGIC = 0x4e52504d; // 'MPRN'
const VERSION = 3;
const HEADER_BYTES = 4096;
const QUEUE_STRIDE = 128;
const ABORT_TEXT_OFFSET = 1024;
const ABORT_TEXT_MAX = HEADER_BYTES - ABORT_TEXT_OFFSET;

// header words
const H_MAGIC = 0;
const H_VERSION = 1;
const H_NLOCAL = 2;
const H_RING = 3;
const H_ABORT = 4;
const H_ABORT_LEN = 5;
const H_SLOTS = 6;
// rank block words (relative)
const R_DOOR = 0;
const R_SLEEPING = 1;
const R_PID = 2;
/** The rank's heap: XPMEM segid (low, high u32) and bytes (low, high u32), for the agent to attach. */
const R_HEAP = 3;
/** Team slot s of a rank block: a cache line at byte 64 * (s + 1): ack, then data. */
const T_ACK = 0;
const T_DATA = 1;
// queue control words (relative): the tail alone in the first line
const Q_TAIL = 0;
const Q_HEAD = 16;
const Q_WANT = 17;

/**
 * What a sleeping rank waits for; ringers wake it only for a matching class,
 * so a rank asleep in a barrier is not woken by every put into its heap.
 */
export const WAKE_MESSAGE = 1;
export const WAKE_HEAP = 2;
/** A collective's data published by a member. */
export const WAKE_SYNC = 4;
/** A member's end of a collective round (barriers and bank reuse wait for these). */
export const WAKE_ACK = 8;

/**
 * A sleeping word holds the classes its rank sleeps for in its low byte and, above it, a
 * generation that each publication of a sleep moves on (native/words.h ArmSleep). A ringer
 * clears the classes only if the word is still the one it saw: one preempted between moving
 * the door and clearing them would otherwise clear the rank's next sleep, and every later
 * ringer, reading no classes, would leave the rank asleep to the end of its slice.
 */
export const WAKE_BITS = 0xff;
const SLEEP_GENERATION = 0x100;

/** Publishes a sleep for `wake` in word `index`, a generation on from the last; the value published. */
export function armSleep(i32: Int32Array, index: number, wake: number): number {
  const armed = (((Atomics.load(i32, index) & ~WAKE_BITS) + SLEEP_GENERATION) | 0) | (wake & WAKE_BITS);
  Atomics.store(i32, index, armed);
  return armed;
}

/** Awake again: no classes, the generation kept (a ringer may have cleared the classes already). */
export function disarmSleep(i32: Int32Array, index: number, armed: number): void {
  Atomics.store(i32, index, armed & ~WAKE_BITS);
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Where everything lies; `total` grows linearly in nlocal. */
export function controlLayout(nlocal: number, ringBytes: number, teamSlots: number): { ranks: number; stride: number; queues: number; rings: number; total: number } {
  const p = nlocal + 1;
  const ranks = HEADER_BYTES;
  const stride = 64 * (teamSlots + 1);
  const queues = align(ranks + stride * p, 4096);
  const rings = align(queues + QUEUE_STRIDE * p, 4096);
  return { ranks, stride, queues, rings, total: rings + ringBytes * p };
}

export class ControlSegment {
  readonly i32: Int32Array;
  readonly u8: Uint8Array;
  readonly nlocal: number;
  /** Ring participants: the local ranks, then the node agent (index `gateway`). */
  readonly participants: number;
  readonly gateway: number;
  readonly ringBytes: number;
  readonly teamSlots: number;
  readonly #ranks: number;
  readonly #stride: number;
  readonly #queues: number;
  readonly #rings: number;

  private constructor(readonly buffer: ArrayBuffer) {
    this.i32 = new Int32Array(buffer);
    this.u8 = new Uint8Array(buffer);
    if (this.i32[H_MAGIC] !== MAGIC || this.i32[H_VERSION] !== VERSION) throw new Error('not an mprun control segment (magic or version mismatch)');
    this.nlocal = this.i32[H_NLOCAL]!;
    this.participants = this.nlocal + 1;
    this.gateway = this.nlocal;
    this.ringBytes = this.i32[H_RING]!;
    this.teamSlots = this.i32[H_SLOTS]!;
    const l = controlLayout(this.nlocal, this.ringBytes, this.teamSlots);
    this.#ranks = l.ranks;
    this.#stride = l.stride;
    this.#queues = l.queues;
    this.#rings = l.rings;
  }

  /** Creates the segment for `nlocal` ranks; returns it and the fd to hand to the ranks. */
  static create(nlocal: number, ringBytes: number, teamSlots: number): { segment: ControlSegment; fd: number } {
    if (ringBytes < 4096 || (ringBytes & (ringBytes - 1)) !== 0) throw new RangeError('ring size must be a power of two of at least 4096 bytes');
    const n = native();
    const { total } = controlLayout(nlocal, ringBytes, teamSlots);
    const fd = n.memfdCreate('mprun-control', total);
    const buffer = n.mapFd(fd, 0, total, fd);
    const i32 = new Int32Array(buffer);
    i32[H_NLOCAL] = nlocal;
    i32[H_RING] = ringBytes;
    i32[H_SLOTS] = teamSlots;
    i32[H_VERSION] = VERSION;
    Atomics.store(i32, H_MAGIC, MAGIC);
    return { segment: new ControlSegment(buffer), fd };
  }

  /** Maps an inherited control segment. */
  static open(fd: number): ControlSegment {
    const n = native();
    return new ControlSegment(n.mapFd(fd, 0, n.fdSize(fd)));
  }

  /** Whether unmap() ran (its words are gone: a wait still running then ends, see runtime/wait.ts). */
  unmapped = false;

  unmap(): void {
    this.unmapped = true;
    native().release(this.buffer);
  }

  // --- abort -------------------------------------------------------------
  /** Marks the job aborted with a reason and wakes every rank of this node. */
  abort(reason: string): void {
    if (Atomics.compareExchange(this.i32, H_ABORT, 0, 1) !== 0) return;
    const text = Buffer.from(reason, 'utf8').subarray(0, ABORT_TEXT_MAX);
    this.u8.set(text, ABORT_TEXT_OFFSET);
    Atomics.store(this.i32, H_ABORT_LEN, text.length);
    Atomics.store(this.i32, H_ABORT, 2);
    for (let r = 0; r < this.nlocal; r++) this.wakeAlways(r);
  }

  aborted(): boolean {
    return Atomics.load(this.i32, H_ABORT) !== 0;
  }

  abortReason(): string {
    if (Atomics.load(this.i32, H_ABORT) !== 2) return 'the job is aborting';
    const len = Atomics.load(this.i32, H_ABORT_LEN);
    return Buffer.from(this.u8.subarray(ABORT_TEXT_OFFSET, ABORT_TEXT_OFFSET + len)).toString('utf8');
  }

  // --- doorbells -----------------------------------------------------------
  /** Word index of rank r's doorbell (futex word). */
  doorIndex(r: number): number {
    return (this.#ranks + this.#stride * r) / 4 + R_DOOR;
  }
  sleepingIndex(r: number): number {
    return (this.#ranks + this.#stride * r) / 4 + R_SLEEPING;
  }
  pidIndex(r: number): number {
    return (this.#ranks + this.#stride * r) / 4 + R_PID;
  }
  /** Publishes local rank r's heap (its XPMEM segid and size) for the node agent. */
  publishHeap(r: number, segid: bigint, bytes: number): void {
    const w = this.pidIndex(r) - R_PID + R_HEAP;
    this.i32[w] = Number(segid & 0xffffffffn) | 0;
    this.i32[w + 1] = Number(segid >> 32n) | 0;
    this.i32[w + 2] = bytes % 0x100000000 | 0;
    Atomics.store(this.i32, w + 3, Math.floor(bytes / 0x100000000));
  }

  /** Local rank r's heap as it published it, or null before it did. */
  heapOf(r: number): { segid: bigint; bytes: number } | null {
    const w = this.pidIndex(r) - R_PID + R_HEAP;
    const bytes = (Atomics.load(this.i32, w + 3) >>> 0) * 0x100000000 + (this.i32[w + 2]! >>> 0);
    if (bytes === 0) return null;
    return { segid: (BigInt(this.i32[w + 1]! >>> 0) << 32n) | BigInt(this.i32[w]! >>> 0), bytes };
  }

  /** Local rank r's ack word for team slot `slot` (written by r only). */
  teamAckIndex(r: number, slot: number): number {
    return (this.#ranks + this.#stride * r + 64 * (slot + 1)) / 4 + T_ACK;
  }
  /** Local rank r's data word for team slot `slot` (written by r only). */
  teamDataIndex(r: number, slot: number): number {
    return (this.#ranks + this.#stride * r + 64 * (slot + 1)) / 4 + T_DATA;
  }

  /**
   * Tells local rank r that something of class `wake` happened. Costs one
   * load unless r sleeps waiting for that class: a waiter publishes what it
   * waits for in `sleeping` before its last
   * check (seq-cst), so a ringer that reads 0 wrote its data before that check.
   * When r sleeps, the door moves (its futex wait then cannot miss the
   * change) and the ringer that clears the classes of the sleep it saw pays
   * the wake syscall (finishRing).
   */
  ring(r: number, wake: number): void {
    const sleeping = this.sleepingIndex(r);
    const seen = Atomics.load(this.i32, sleeping);
    if ((seen & wake) === 0) return;
    Atomics.add(this.i32, sleeping - R_SLEEPING + R_DOOR, 1);
    this.finishRing(r, seen);
  }

  /**
   * ring()'s second half, for the sleep `seen` (rank r's sleeping word when the door moved):
   * clears its classes and wakes r, unless r has woken since (or another ringer did it). A
   * step of its own so that a test can play a ringer preempted between the two halves.
   */
  finishRing(r: number, seen: number): void {
    const sleeping = this.sleepingIndex(r);
    if (Atomics.compareExchange(this.i32, sleeping, seen, seen & ~WAKE_BITS) === seen) native().futexWake(this.i32, sleeping - R_SLEEPING + R_DOOR);
  }

  /**
   * ring(), after plain stores to memory that rank r reads (a put's bytes).
   * ring()'s check is a plain load, which x86 may run before this thread's
   * earlier plain stores reach memory: a waiter that published its sleep and
   * then still saw the old bytes would sleep on, unrung, until its slice ended.
   * A locked read-modify-write of the sleeping word is the full barrier
   * (messages need none: they are published with sequentially consistent stores).
   */
  ringAfterStores(r: number, wake: number): void {
    if ((Atomics.or(this.i32, this.sleepingIndex(r), 0) & wake) !== 0) this.ring(r, wake);
  }

  wakeAlways(r: number): void {
    const door = this.doorIndex(r);
    Atomics.add(this.i32, door, 1);
    native().futexWake(this.i32, door);
  }

  // --- queues ----------------------------------------------------------------
  /** Word index of participant r's queue tail (advanced by its producers with compare-exchange). */
  tailIndex(r: number): number {
    return (this.#queues + QUEUE_STRIDE * r) / 4 + Q_TAIL;
  }
  /** Word index of participant r's queue head (advanced by r, its consumer). */
  headIndex(r: number): number {
    return (this.#queues + QUEUE_STRIDE * r) / 4 + Q_HEAD;
  }
  /** Word index of "a producer found r's queue full and waits for room". */
  wantIndex(r: number): number {
    return (this.#queues + QUEUE_STRIDE * r) / 4 + Q_WANT;
  }
  /** Byte offset of participant r's queue data. */
  ringOffset(r: number): number {
    return this.#rings + this.ringBytes * r;
  }
}
