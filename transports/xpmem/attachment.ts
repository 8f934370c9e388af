/**
 * What attach() returns. Mapped backends (kernel XPMEM, shared-memory
 * segments) give `bytes`: memory read and written with plain loads and stores.
 * The CMA backend cannot map, so `bytes` is null and read()/write() copy with
 * process_vm_readv/writev; they work on every backend.
 */
import { native } from '../../native/index.js';
import { MprunError, xpmemError } from '../../core/errors.js';
import type { XpmemBackendName } from './constants.js';

type TypedArrayCtor<T> = { new (buffer: ArrayBuffer, byteOffset: number, length: number): T; BYTES_PER_ELEMENT: number };

export class Attachment {
  #mapping: ArrayBuffer | null;
  #detached = false;

  /**
   * @param backend the mechanism behind this attachment
   * @param length bytes attached
   * @param ownerPid the process that made the segment
   * @param mapping the mapped memory (null for CMA), of which [mapOffset, mapOffset+length) is the attached range
   * @param remoteAddr for CMA: the address of the range in the owner
   */
  constructor(
    readonly backend: XpmemBackendName,
    readonly length: number,
    readonly ownerPid: number,
    mapping: ArrayBuffer | null,
    readonly mapOffset: number,
    readonly remoteAddr: bigint,
    readonly writable: boolean,
  ) {
    this.#mapping = mapping;
    this.bytes = mapping === null ? null : new Uint8Array(mapping, mapOffset, length);
  }

  /** The attached bytes for direct loads and stores; null for the copy-only CMA backend. */
  readonly bytes: Uint8Array | null;

  get mapped(): boolean {
    return this.bytes !== null;
  }

  get detached(): boolean {
    return this.#detached;
  }

  /** A typed view of the attached memory (mapped backends only). */
  view<T>(Type: TypedArrayCtor<T>, byteOffset = 0, length?: number): T {
    const mapping = this.#live();
    if (mapping === null) throw xpmemError('EINVAL', 'a CMA attachment cannot be viewed directly; use read()/write()');
    const count = length ?? Math.floor((this.length - byteOffset) / Type.BYTES_PER_ELEMENT);
    this.#check(byteOffset, count * Type.BYTES_PER_ELEMENT);
    return new Type(mapping, this.mapOffset + byteOffset, count);
  }

  /** Copies attached bytes at `offset` into `dst`. */
  read(offset: number, dst: ArrayBufferView): void {
    const mapping = this.#live();
    this.#check(offset, dst.byteLength);
    const out = new Uint8Array(dst.buffer as ArrayBuffer, dst.byteOffset, dst.byteLength);
    if (mapping !== null) out.set(new Uint8Array(mapping, this.mapOffset + offset, dst.byteLength));
    else native().cmaRead(this.ownerPid, this.remoteAddr + BigInt(offset), out);
  }

  /** Copies `src` into the attached bytes at `offset`. */
  write(offset: number, src: ArrayBufferView): void {
    const mapping = this.#live();
    if (!this.writable) throw xpmemError('EACCES', 'attachment is read-only');
    this.#check(offset, src.byteLength);
    const bytes = new Uint8Array(src.buffer as ArrayBuffer, src.byteOffset, src.byteLength);
    if (mapping !== null) new Uint8Array(mapping, this.mapOffset + offset, src.byteLength).set(bytes);
    else native().cmaWrite(this.ownerPid, this.remoteAddr + BigInt(offset), bytes);
  }

  /** Unmaps; every view handed out becomes empty. Idempotent. */
  detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    if (this.#mapping !== null) native().release(this.#mapping);
    this.#mapping = null;
  }

  #live(): ArrayBuffer | null {
    if (this.#detached) throw xpmemError('EINVAL', 'attachment is detached');
    return this.#mapping;
  }

  #check(offset: number, bytes: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + bytes > this.length) {
      throw new MprunError('ERR_MPRUN_XPMEM', `range [${offset}, ${offset + bytes}) outside the attachment of ${this.length} bytes`, { errno: 'EINVAL' });
    }
  }
}
