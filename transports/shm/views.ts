/**
 * Typed views of one region of shared memory, one per element type, made on
 * first use and kept: payloads then move with TypedArray.set/slice between
 * arrays of the same type (memcpy), never through temporary byte views.
 */
import type { TypedArray } from '../../core/types.js';

type ViewCtor = { new (buffer: ArrayBuffer, byteOffset: number, length: number): TypedArray; BYTES_PER_ELEMENT: number };

export class TypedViews {
  // Looked up by identity in a short list (at most one per element type), not a Map: this is on
  // every small send and receive, and a Map lookup cost more than the whole scan.
  readonly #ctors: unknown[] = [];
  readonly #views: TypedArray[] = [];

  constructor(
    readonly buffer: ArrayBuffer,
    readonly byteOffset = 0,
    readonly byteLength = buffer.byteLength,
  ) {}

  /** The region as elements of `Ctor` (index 0 at byteOffset). */
  of(Ctor: unknown): TypedArray {
    const ctors = this.#ctors;
    for (let i = 0; i < ctors.length; i++) if (ctors[i] === Ctor) return this.#views[i]!;
    const C = Ctor as ViewCtor;
    const v = new C(this.buffer, this.byteOffset, Math.floor(this.byteLength / C.BYTES_PER_ELEMENT));
    ctors.push(Ctor);
    this.#views.push(v);
    return v;
  }
}
