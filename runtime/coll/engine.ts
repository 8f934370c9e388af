/**
 * What a team's collectives run on, whatever carries them: the generator
 * protocol every engine speaks (ShmCollectives within a node, shm.ts;
 * MsgCollectives across nodes, msg.ts), the kinds of collective their
 * mismatch checks name, and values as parts of bytes, the form both move.
 *
 * An engine's collectives are generators that yield "ready?" predicates; the
 * Team's driver waits on each (asynchronously for the Team API, synchronously
 * for split()), and every wait drives the rank's point-to-point progress too.
 */
import { allocate, DTYPE_BUFFER, DTYPE_DATAVIEW, DTYPE_MSGPACK, encode, finish, moveCtor, unpackValue } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import { MprunError } from '../../core/errors.js';
import type { ReduceOp } from './ops.js';

/**
 * What a collective waits for, polled by the driver (and by the rank's other waits: Waiter.wait);
 * `wake` is the event class that can make it true. Once true it stays true, and a poll that
 * takes something (a message) keeps it for the step: polled again, it loses nothing.
 */
export type Ready = (() => boolean) & { wake?: number; settles?: Promise<unknown> };
export type Steps<T> = Generator<Ready, T, void>;

/** Steps that wait for `p` (a quiet, a release: promises that other waits of the rank settle) and return, or throw its error. */
export function* settledSteps(p: Promise<unknown>): Steps<void> {
  const state = { done: false, failed: false, error: undefined as unknown };
  p.then(
    () => void (state.done = true),
    (e: unknown) => void Object.assign(state, { done: true, failed: true, error: e }),
  );
  // Awaited as it is by the team (settles): nothing rings for it (a release spins on the node's lock
  // through event-loop turns), so a poll or a sleep on the doorbell would only waste the time.
  if (!state.done) yield Object.assign(() => state.done, { settles: p });
  if (state.failed) throw state.error;
}

export const KIND = { barrier: 1, bcast: 2, gather: 3, allgather: 4, scatter: 5, alltoall: 6, reduce: 7, allreduce: 8, scan: 9 } as const;
export type ReductionKind = typeof KIND.reduce | typeof KIND.allreduce | typeof KIND.scan;
/** A kind's name for error messages, by its code. */
export const KIND_NAME = Object.fromEntries(Object.entries(KIND).map(([k, v]) => [v, k])) as Record<number, string>;
/** A collective done in its call: one resolved promise for all of them. */
export const RESOLVED: Promise<void> = Promise.resolve();
/** Reductions as hang reports and errors name them. */
export const REDUCTION_NAMES: Record<ReductionKind, string> = { [KIND.reduce]: 'reduce', [KIND.allreduce]: 'allreduce', [KIND.scan]: 'scan' };

/** A value as bytes: a typed array's own elements (dtype its codec code), or msgpack (DTYPE_MSGPACK). */
export interface Part {
  dtype: number;
  bytes: Uint8Array;
}

/** What a team's collectives run on: ShmCollectives within a node, MsgCollectives across nodes. */
export interface CollectiveEngine {
  barrier(): Steps<void>;
  /** Typed arrays in place (and returned); any other value returned on every member. */
  bcast(data: unknown, root: number): Steps<unknown>;
  /** Allgather when `root` is null; else the root gets every contribution, the others null. */
  gather(value: unknown, root: number | null): Steps<unknown>;
  /** The root's parts[i] goes to member i (parts: see partsOf; null elsewhere); returns this member's. */
  scatter(parts: Part[] | null, root: number): Steps<unknown>;
  /** parts[i] goes to member i; returns what every member sent this one. */
  alltoall(parts: Part[]): Steps<unknown>;
  /** In place on `buf`; returns `result` when it is not a typed array (null for non-roots), else scalar(buf) or buf. */
  reduce<R>(buf: TypedArray, op: ReduceOp, kind: ReductionKind, root: number, result: R, scalar: ((a: TypedArray) => R) | null): Steps<R>;
}

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer as ArrayBuffer, a.byteOffset, a.byteLength);
}

/** Whether values of type code `dtype`, all alike, come back concatenated (typed arrays; not Buffers, DataViews or msgpack), as isTyped says. */
export function joins(dtype: number): boolean {
  return dtype !== DTYPE_MSGPACK && dtype !== DTYPE_BUFFER && dtype !== DTYPE_DATAVIEW;
}

export function isTyped(v: unknown): v is TypedArray {
  return ArrayBuffer.isView(v) && !(v instanceof DataView) && !Buffer.isBuffer(v);
}

/** A value as parts of bytes: typed arrays alias their memory; msgpack is copied (the packer reuses its buffer). */
export function encodePart(value: unknown): Part {
  const e = encode(value);
  return { dtype: e.dtype, bytes: e.dtype === DTYPE_MSGPACK ? (e.payload as Uint8Array).slice() : bytesOf(e.payload) };
}

export function decodePart(dtype: number, bytes: Uint8Array): unknown {
  if (dtype === DTYPE_MSGPACK) return unpackValue(bytes);
  const out = allocate(dtype, bytes.byteLength);
  bytesOf(out).set(bytes);
  return finish(dtype, out);
}

export function typeName(dtype: number): string {
  return dtype === DTYPE_MSGPACK ? 'a msgpack value' : moveCtor(dtype).name;
}

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** values as `size` parts: equal slices of a typed array, or the elements of an array. */
export function partsOf(values: unknown, size: number, what: string): Part[] {
  if (isTyped(values)) {
    if (values.length % size !== 0) throw new RangeError(`${what}: a ${values.constructor.name} of ${values.length} elements does not split into ${size} equal parts`);
    const n = values.length / size;
    const dtype = encode(values).dtype;
    return range(size).map((q) => ({ dtype, bytes: bytesOf(values.subarray(q * n, (q + 1) * n)) }));
  }
  if (!Array.isArray(values) || values.length !== size) throw new TypeError(`${what}: expected an array of ${size} values (one per team rank) or a typed array`);
  return values.map(encodePart);
}

/**
 * split()'s new team from every member's [color, key, next free slot]: the
 * members of `color` (their ranks in the old team) ordered by key, then by
 * rank, and the first slot free on all of them.
 */
export function splitPlan(all: ReadonlyArray<readonly [number, number, number]>, color: number, slotCount: number): { members: number[]; slot: number } {
  const chosen = all
    .map(([c, k, next], r) => ({ c, k, next, r }))
    .filter((m) => m.c === color)
    .sort((a, b) => a.k - b.k || a.r - b.r);
  const slot = Math.max(...chosen.map((m) => m.next));
  if (slot >= slotCount) throw new MprunError('ERR_MPRUN_UNSUPPORTED', `no team slot left (${slotCount} in all); raise MPRUN_TEAM_SLOTS`);
  return { members: chosen.map((m) => m.r), slot };
}
