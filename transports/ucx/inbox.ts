/**
 * Messages arriving over UCX active messages, delivered to the rank's
 * MessageSink in the order they arrived.
 *
 * Why active messages and not tagged receives: a message's source world rank,
 * tag and dtype travel in the AM header, so the receiver needs no posted
 * receives and no per-peer matching state (the rank's matching engine,
 * runtime/p2p.ts, matches); eager messages arrive in UCX's own buffer and are
 * copied once into the inbox, and larger ones (UCX chooses rendezvous past its
 * eager limit, which grows with the TCP segment sizes) land with ucp_am_recv_data_nbx in a buffer that
 * becomes the payload's ArrayBuffer without a further copy.
 *
 * native/ucx.cc appends records to one batch; takeMessages() hands the whole
 * batch over in one call, and giveBack() returns it (and each rendezvous
 * message's buffer) once delivered: a sink copies what it keeps, so the
 * native side reuses that memory instead of faulting in fresh pages for every
 * batch. A record: u32 length, u32 source, i32 tag, u32
 * dtype, u32 large id (0: the payload follows inline), u32 pad, payload padded
 * to 8 bytes. A rendezvous record keeps its place: it and every record after it
 * wait until its data is in, so messages are delivered in arrival order.
 */
import type { MessageSink } from '../endpoint.js';
import type { NativeUcx } from '../../native/index.js';

const HEADER = 24;

export class Inbox {
  readonly #ucx: NativeUcx;
  readonly #sink: MessageSink;
  #batch: ArrayBuffer | null = null;
  #words: Uint32Array | null = null;
  #bytes: Uint8Array | null = null;
  #at = 0;
  #delivering = false;

  constructor(ucx: NativeUcx, sink: MessageSink) {
    this.#ucx = ucx;
    this.#sink = sink;
  }

  /** Whether a rendezvous message is being received (deliveries wait for it). */
  get waiting(): boolean {
    return this.#batch !== null;
  }

  /** Delivers what has arrived; how many messages. A sink that progresses from inside arrived() delivers nothing more. */
  deliver(): number {
    if (this.#delivering) return 0;
    this.#delivering = true;
    try {
      return this.#deliver();
    } finally {
      this.#delivering = false;
    }
  }

  #deliver(): number {
    let n = 0;
    for (;;) {
      if (this.#batch === null) {
        const b = this.#ucx.takeMessages();
        if (b === null) return n;
        this.#batch = b;
        this.#words = new Uint32Array(b, 0, b.byteLength >>> 2);
        this.#bytes = new Uint8Array(b);
        this.#at = 0;
      }
      const words = this.#words!;
      const bytes = this.#bytes!;
      while (this.#at < bytes.byteLength) {
        const w = this.#at >>> 2;
        const length = words[w]!;
        const source = words[w + 1]!;
        const tag = words[w + 2]! | 0;
        const dtype = words[w + 3]!;
        const large = words[w + 4]!;
        if (large !== 0) {
          let data: ArrayBuffer | null;
          try {
            data = this.#ucx.takeLarge(large);
          } catch (e) {
            this.#at += HEADER; // failed (its sender died): reported once, the rest still delivered
            throw e;
          }
          if (data === null) return n; // still arriving: keep the order
          this.#at += HEADER;
          try {
            this.#sink.arrived(source, tag, dtype, new Uint8Array(data));
          } finally {
            this.#ucx.giveBack(data);
          }
        } else {
          const start = this.#at + HEADER;
          this.#at = start + ((length + 7) & ~7);
          this.#sink.arrived(source, tag, dtype, bytes.subarray(start, start + length));
        }
        n++;
      }
      this.#ucx.giveBack(this.#batch!);
      this.#batch = null;
      this.#words = null;
      this.#bytes = null;
    }
  }
}
