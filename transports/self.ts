/**
 * The rank itself: its own heap (puts and gets are copies within it,
 * atomics hardware atomics on it) and messages to itself, handed straight to
 * its own matching engine.
 */
import type { TypedArray, TypedArrayConstructor } from '../core/types.js';
import { atomicAt } from './atomics.js';
import { SENT, type AtomicOpCode, type Endpoint, type EndpointCaps, type MessageSink, type SendCompletion } from './endpoint.js';

const CAPS: EndpointCaps = { canMap: true, atomics: true, putCompleteOnReturn: true, progressWithoutTarget: true, latency: 2e-8, bandwidth: 40e9 };

export class SelfEndpoint implements Endpoint {
  static readonly caps = CAPS;
  readonly name = 'self';
  readonly caps = CAPS;
  readonly #heap: ArrayBuffer;
  readonly #scratch: ArrayBuffer;
  readonly #me: number;
  readonly #loopback: MessageSink;
  #i32: Int32Array | null = null;
  #i64: BigInt64Array | null = null;

  constructor(me: number, heap: ArrayBuffer, scratch: ArrayBuffer, loopback: MessageSink) {
    this.#me = me;
    this.#heap = heap;
    this.#scratch = scratch;
    this.#loopback = loopback;
  }

  map(): ArrayBuffer {
    return this.#heap;
  }

  mapScratch(): ArrayBuffer {
    return this.#scratch;
  }

  put(offset: number, src: TypedArray): void {
    const Ctor = src.constructor as TypedArrayConstructor<TypedArray>;
    (new Ctor(this.#heap, offset, src.length) as Float64Array).set(src as unknown as Float64Array);
  }

  get(offset: number, dst: TypedArray): undefined {
    const Ctor = dst.constructor as TypedArrayConstructor<TypedArray>;
    (dst as Float64Array).set(new Ctor(this.#heap, offset, dst.length) as unknown as Float64Array);
    return undefined;
  }

  atomic(op: AtomicOpCode, _dtype: number, offset: number, a: number | bigint, b: number | bigint): number | bigint {
    if (typeof a === 'bigint') return atomicAt((this.#i64 ??= new BigInt64Array(this.#heap, 0, Math.floor(this.#heap.byteLength / 8))), offset / 8, op, a, b);
    return atomicAt((this.#i32 ??= new Int32Array(this.#heap, 0, Math.floor(this.#heap.byteLength / 4))), offset / 4, op, a, b);
  }

  flush(): undefined {
    return undefined;
  }

  send(tag: number, dtype: number, payload: TypedArray): SendCompletion {
    this.#loopback.arrived(this.#me, tag, dtype, payload);
    return SENT;
  }

  close(): void {}
}
