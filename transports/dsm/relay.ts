/**
 * The agent's message relay: a MSG from a rank on another node lands in a
 * buffer of its own type (the frame's payload streams straight into it),
 * then goes into the node queue to its destination rank, the agent writing
 * as the node's gateway participant. Messages to one rank keep their arrival
 * order: while that rank's queue is full they wait in its outbox (a large
 * message part-way in, fragment by fragment), and the relay resumes when a
 * consumer makes room and rings the gateway's door (RoomSignal: a DoorWatch);
 * other ranks' messages do not wait for it.
 */
import { allocate, DTYPE_CTORS, moveCtor } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import type { OutgoingMessage } from '../shm/queue.js';
import { ProtocolError, type Header } from './frames.js';

/** The node queues as the relay uses them (NodeQueues, as the gateway). */
export interface RelayQueues {
  readonly maxEager: number;
  /** Posts as much of `m` as fits now into local rank `dest`'s queue; whether all of it is in. */
  tryPost(dest: number, m: OutgoingMessage, eagerLimit: number, origin: number): boolean;
}

/**
 * Tells the relay that a queue may have room. A relay that found one full
 * arms it, then tries once more; `pump` is called once the gateway's door
 * moved since the arm (a consumer made room, or any other ring) or a slice
 * passed without a ring (transports/shm/door.ts). Before, the
 * relay retried every millisecond: a 1 MiB message, five refills of a 256 KiB
 * queue, crossed nodes at 0.4 GB/s.
 */
export interface RoomSignal {
  arm(): void;
  close(): void;
}

export interface RelayItem extends OutgoingMessage {
  /** The world rank that sent it. */
  origin: number;
}

/**
 * Landing buffers of RECYCLE_BYTES to RECYCLE_MAX_BYTES are kept for the next
 * message once relayed (the SPARES most recent): a fresh 1 MiB array cost
 * V8's zeroing and a page fault per 4 KiB on every message. Larger ones are
 * let go, so that one huge message does not stay in the agent for the job.
 */
const RECYCLE_BYTES = 64 << 10;
const RECYCLE_MAX_BYTES = 16 << 20;
const SPARES = 4;

export class MessageRelay {
  readonly #queues: RelayQueues;
  readonly #outbox: RelayItem[][];
  readonly #room: RoomSignal;
  readonly #spares: ArrayBuffer[] = [];

  /** `nlocal`: the ranks on this node; `room(pump)` makes the signal that calls pump when room appears. */
  constructor(queues: RelayQueues, nlocal: number, room: (pump: () => void) => RoomSignal) {
    this.#queues = queues;
    this.#outbox = Array.from({ length: nlocal }, () => []);
    this.#room = room(() => this.pump());
  }

  /** The array a message of type `dtype` and `bytes` bytes lands in (checked: a known type, whole elements). */
  landing(dtype: number, bytes: number): TypedArray {
    if (dtype < 0 || dtype > DTYPE_CTORS.length + 2) throw new ProtocolError(`MSG of unknown type code ${dtype}`);
    const Ctor = moveCtor(dtype);
    if (bytes % Ctor.BYTES_PER_ELEMENT !== 0) throw new ProtocolError(`MSG of ${bytes} bytes is not whole elements`);
    if (bytes < RECYCLE_BYTES) return allocate(dtype, bytes);
    // A spare that fits and is not over twice the size, else memory V8 does not zero (every byte is received into it).
    const i = this.#spares.findIndex((b) => b.byteLength >= bytes && b.byteLength <= 2 * bytes);
    const buffer = i >= 0 ? this.#spares.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(bytes).buffer;
    return new Ctor(buffer, 0, bytes / Ctor.BYTES_PER_ELEMENT);
  }

  /** Queues the message of MSG `h` (landed in `payload`) for local rank `l` and relays what fits. */
  deliver(l: number, h: Header, payload: TypedArray): void {
    this.#outbox[l]!.push({ origin: h.id, tag: h.arg, dtype: h.aux, payload, offset: 0 });
    this.pump();
  }

  /** Messages not yet in their destination's queue. */
  get waiting(): number {
    return this.#outbox.reduce((n, box) => n + box.length, 0);
  }

  /** Relays queued messages into the queues of their ranks; while a queue is full, waits for its consumer to ring. */
  pump(): void {
    if (!this.#post()) return;
    this.#room.arm();
    this.#post(); // room made before the arm rang nobody: look once more
  }

  /** Posts what fits; whether a queue was full. */
  #post(): boolean {
    const q = this.#queues;
    let stuck = false;
    this.#outbox.forEach((box, l) => {
      while (box.length > 0) {
        const m = box[0]!;
        if (!q.tryPost(l, m, q.maxEager, m.origin)) break;
        box.shift();
        this.#recycle(m.payload);
      }
      if (box.length > 0) stuck = true;
    });
    return stuck;
  }

  /** A relayed message's landing buffer, kept for the next large one (its bytes are in the queue now). */
  #recycle(payload: TypedArray): void {
    const b = payload.buffer;
    if (payload.byteLength < RECYCLE_BYTES || b.byteLength > RECYCLE_MAX_BYTES || !(b instanceof ArrayBuffer)) return;
    if (this.#spares.length >= SPARES) this.#spares.shift(); // the oldest: sizes that stopped coming
    this.#spares.push(b);
  }

  close(): void {
    this.#spares.length = 0;
    this.#room.close();
  }
}
