/**
 * Typed views of one region of shared memory, one per element type, made on
 * first use and kept: payloads then move with TypedArray.set/slice between
 * arrays of the same type (memcpy), never through temporary byte views.
 */
import type { TypedArray } from '../../core/types.js';

type ViewCtor = { new (buffer: ArrayBuffer, byteOffset: number, length: number): TypedArray; BYTES_PER_ELEMENT: number };

export class TypedViews {
  readonly #views = new Map<unknown, TypedArray>();

  constructor(
    readonly buffer: ArrayBuffer,
    readonly byteOffset = 0,
    readonly byteLength = buffer.byteLength,
  ) {}

  /** The region as elements of `Ctor` (index 0 at byteOffset). */
  of(Ctor: unknown): TypedArray {
    let v = this.#views.get(Ctor);
    if (v === undefined) {
      const C = Ctor as ViewCtor;
      v = new C(this.buffer, this.byteOffset, Math.floor(this.byteLength / C.BYTES_PER_ELEMENT));
      this.#views.set(Ctor, v);
    }
    return v;
  }
}
