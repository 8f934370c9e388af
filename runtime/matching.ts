/**
 * MPI's matching rules for point-to-point messages (runtime/p2p.ts): which
 * message answers which receive, how hang reports name them, and where a
 * received message's data lands for a receive into a buffer of the caller's.
 */
import { DTYPE_BYTES, dtypeOf } from '../core/codec.js';
import { MprunError } from '../core/errors.js';
import type { TypedArray } from '../core/types.js';

export const ANY_SOURCE = -1;
export const ANY_TAG = -1;
/** User tags are below this; the runtime's own messages use the tags above. */
export const INTERNAL_TAG = 0x40000000;

export interface Message<T = unknown> {
  data: T;
  source: number;
  tag: number;
}

/** A receive posted before its message arrived. */
export interface PendingRecv {
  source: number;
  tag: number;
  message: Message | null;
  /** recvInto's buffer: a matching typed message is assembled straight into it. */
  into: TypedArray | null;
  /** Matched by a large message whose first fragment arrived: nothing else may take it (its buffer fills). */
  claimed: boolean;
}

/** A tag as hang reports name it: user tags by number, the runtime's own as internal. */
export function describeTag(tag: number): string {
  return tag === ANY_TAG ? ', tag ANY_TAG' : tag >= INTERNAL_TAG ? ' (a collective across nodes)' : `, tag ${tag}`;
}

/** A posted receive as hang reports name it. */
export function describeRecv(r: PendingRecv): string {
  return `${r.into === null ? 'recv' : 'recvInto'}(source ${r.source === ANY_SOURCE ? 'ANY_SOURCE' : r.source}${describeTag(r.tag)})`;
}

function checkPeer(rank: number, size: number, what: string): void {
  if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw new RangeError(`${what} ${rank} is not a rank of this world (size ${size})`);
}

/** A send's destination and tag, in a world of `size` ranks: RangeErrors for anything else. */
export function checkSend(dest: number, tag: number, size: number): void {
  checkPeer(dest, size, 'destination');
  if (!Number.isInteger(tag) || tag < 0 || tag >= INTERNAL_TAG) throw new RangeError(`tag must be an integer from 0 to ${INTERNAL_TAG - 1}, not ${tag}`);
}

/** A receive's source and tag (either may be ANY_*). */
export function checkRecv(source: number, tag: number, size: number): void {
  if (source !== ANY_SOURCE) checkPeer(source, size, 'source');
  if (tag !== ANY_TAG && (!Number.isInteger(tag) || tag < 0 || tag >= INTERNAL_TAG)) throw new RangeError(`tag must be an integer from 0 to ${INTERNAL_TAG - 1} or ANY_TAG, not ${tag}`);
}

export function matches(m: Message, source: number, tag: number): boolean {
  return matchesPair(m.source, m.tag, source, tag);
}

/** Whether a message from `mSource` with `mTag` answers a receive of (source, tag). */
export function matchesPair(mSource: number, mTag: number, source: number, tag: number): boolean {
  return (source === ANY_SOURCE || mSource === source) && (tag === ANY_TAG || mTag === tag);
}

/** The first `bytes` of `into` as a message's data: `into` itself when the message fills it (no view to allocate). */
export function filled<T extends TypedArray>(into: T, bytes: number, dtype: number = dtypeOf(into)): T {
  // From length and the type code: V8 does not inline byteLength (codec.ts, typedCode).
  const bpe = DTYPE_BYTES[dtype]!;
  return bytes === into.length * bpe ? into : (into.subarray(0, bytes / bpe) as T);
}

/** Where a message of `dtype` and `bytes` lands in `into`: its filled prefix; null for another type or too little room (a fresh array then). */
export function landing(into: TypedArray | null, dtype: number, bytes: number): TypedArray | null {
  if (into === null || dtypeOf(into) !== dtype || into.length * DTYPE_BYTES[dtype]! < bytes) return null;
  return filled(into, bytes, dtype);
}

/** Whether a received message's data is the prefix of `into` (it was assembled there). */
export function landedIn(m: Message, into: TypedArray): boolean {
  const d = m.data as TypedArray;
  return ArrayBuffer.isView(d) && d.buffer === into.buffer && d.byteOffset === into.byteOffset && d.constructor === into.constructor;
}

/**
 * A receive into `into`'s result from the message `m` it matched: `m` itself
 * when it was assembled there; else (it arrived before the receive was
 * posted, or did not fit) checked and copied into `into`. A message of
 * another type, or longer than `into`, is an ERR_MPRUN_TRUNCATE.
 */
export function intoResult<T extends TypedArray>(m: Message, into: T): Message<T> {
  if (landedIn(m, into)) return m as Message<T>;
  const d = m.data;
  // By type code: a subclass of a typed array travels as its base type (core/codec.ts).
  if (!ArrayBuffer.isView(d) || dtypeOf(d as TypedArray) !== dtypeOf(into)) {
    throw new MprunError('ERR_MPRUN_TRUNCATE', `recvInto(${into.constructor.name}) matched a message of type ${describe(d)} from rank ${m.source} (tag ${m.tag})`, { rank: m.source });
  }
  if ((d as TypedArray).length > into.length) {
    throw new MprunError('ERR_MPRUN_TRUNCATE', `recvInto: a message of ${(d as TypedArray).length} elements from rank ${m.source} (tag ${m.tag}) does not fit in ${into.length}`, { rank: m.source });
  }
  (into as unknown as Float64Array).set(d as unknown as Float64Array);
  return { data: filled(into, (d as TypedArray).byteLength), source: m.source, tag: m.tag };
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  return typeof v === 'object' ? ((v as object).constructor?.name ?? 'object') : typeof v;
}

/** The runtime's own messages (tags from INTERNAL_TAG) that arrived, by source and tag, each pair in order. */
export class InternalMessages {
  readonly #byKey = new Map<number, Message[]>();

  stash(m: Message): void {
    const key = m.source * INTERNAL_TAG + (m.tag - INTERNAL_TAG);
    const q = this.#byKey.get(key);
    if (q === undefined) this.#byKey.set(key, [m]);
    else q.push(m);
  }

  /** The first from `source` with `tag`, or null. */
  take(source: number, tag: number): Message | null {
    const key = source * INTERNAL_TAG + (tag - INTERNAL_TAG);
    const q = this.#byKey.get(key);
    if (q === undefined) return null;
    const m = q.shift()!;
    if (q.length === 0) this.#byKey.delete(key);
    return m;
  }
}
