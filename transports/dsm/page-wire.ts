/**
 * The payloads of the shared-variable frames (frames.ts), written by the
 * ranks (shared.ts) and read by the pages' homes (page-homes.ts):
 *
 *   VAR_REGISTER  JSON { segid, bytes }: the node's segment of the variable, for its agent to map
 *   VAR_WRITE     runs [u32 offset][u32 length][bytes, padded to 4], little-endian
 *   VAR_FETCH     entries [u32 page][u32 version the asker has]
 *   VAR_PAGES     entries [u32 page][u32 version][PAGE_BYTES bytes]: the pages whose version moved
 */
import { MAX_PAYLOAD, ProtocolError } from './frames.js';
import { PAGE_BYTES } from './layout.js';

/** One changed range of a variable: its byte offset and bytes. */
export type WriteRun = [offset: number, bytes: Uint8Array];

/** One entry of a VAR_PAGES reply: the home's copy of `page` at `version`. */
export interface PageCopy {
  page: number;
  version: number;
  bytes: Uint8Array;
}

const RUN_HEAD = 8;
const PAGE_ENTRY = 8 + PAGE_BYTES;

/** Writes runs as VAR_WRITE payloads of at most `maxPayload` bytes each (a run larger than that goes alone). */
export function packRuns(runs: readonly WriteRun[], maxPayload: number): Buffer[] {
  const out: Buffer[] = [];
  let parts: Buffer[] = [];
  let size = 0;
  for (const [off, bytes] of runs) {
    const len = RUN_HEAD + ((bytes.byteLength + 3) & ~3);
    if (size + len > maxPayload && parts.length > 0) {
      out.push(Buffer.concat(parts));
      parts = [];
      size = 0;
    }
    const b = Buffer.alloc(len);
    b.writeUInt32LE(off, 0);
    b.writeUInt32LE(bytes.byteLength, 4);
    b.set(bytes, RUN_HEAD);
    parts.push(b);
    size += len;
  }
  if (parts.length > 0) out.push(Buffer.concat(parts));
  return out;
}

/** The runs of a VAR_WRITE payload (views into it); throws ProtocolError when one is truncated. */
export function parseRuns(payload: Uint8Array): WriteRun[] {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const runs: WriteRun[] = [];
  let at = 0;
  while (at < payload.byteLength) {
    if (at + RUN_HEAD > payload.byteLength) throw new ProtocolError('truncated VAR_WRITE run');
    const off = dv.getUint32(at, true);
    const len = dv.getUint32(at + 4, true);
    at += RUN_HEAD;
    if (at + len > payload.byteLength) throw new ProtocolError(`VAR_WRITE run [${off}, ${off + len}) is truncated`);
    runs.push([off, payload.subarray(at, at + len)]);
    at += (len + 3) & ~3;
  }
  return runs;
}

/** The most pages one VAR_FETCH may ask for: its VAR_PAGES reply must fit one frame. */
export const MAX_FETCH_PAGES = Math.floor(MAX_PAYLOAD / PAGE_ENTRY);

/**
 * The VAR_FETCH payloads that ask for `pages`, each for at most `most` of them
 * (the reply to a request for more, 4,096 pages or 16 MiB of a variable, would
 * not fit a frame: the home refuses it).
 */
export function fetchRequests(pages: ReadonlyArray<[page: number, version: number]>, most = MAX_FETCH_PAGES): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < pages.length; at += most) out.push(encodeFetch(pages.slice(at, at + most)));
  return out;
}

/** A VAR_FETCH payload: each page with the version this node has of it. */
export function encodeFetch(pages: ReadonlyArray<[page: number, version: number]>): Buffer {
  const out = Buffer.allocUnsafe(8 * pages.length);
  pages.forEach(([p, v], i) => {
    out.writeUInt32LE(p, 8 * i);
    out.writeUInt32LE(v, 8 * i + 4);
  });
  return out;
}

/** The entries of a VAR_FETCH payload; throws ProtocolError on a partial entry. */
export function parseFetch(payload: Uint8Array): Array<[page: number, version: number]> {
  if (payload.byteLength % 8 !== 0) throw new ProtocolError('VAR_FETCH of a partial entry');
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const out: Array<[number, number]> = [];
  for (let at = 0; at < payload.byteLength; at += 8) out.push([dv.getUint32(at, true), dv.getUint32(at + 4, true)]);
  return out;
}

/** The bytes a VAR_PAGES payload of `count` pages takes. */
export function pagesPayloadBytes(count: number): number {
  return PAGE_ENTRY * count;
}

/** Writes VAR_PAGES entries into `out` from `at` (pagesPayloadBytes(copies.length) bytes). */
export function writePages(out: Buffer, at: number, copies: readonly PageCopy[]): void {
  copies.forEach((c, i) => {
    const o = at + i * PAGE_ENTRY;
    out.writeUInt32LE(c.page, o);
    out.writeUInt32LE(c.version, o + 4);
    out.set(c.bytes, o + 8);
  });
}

/** The entries of a VAR_PAGES payload (the bytes are views into it). */
export function parsePages(payload: Uint8Array): PageCopy[] {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const out: PageCopy[] = [];
  for (let at = 0; at + PAGE_ENTRY <= payload.byteLength; at += PAGE_ENTRY) {
    out.push({ page: dv.getUint32(at, true), version: dv.getUint32(at + 4, true), bytes: payload.subarray(at + 8, at + PAGE_ENTRY) });
  }
  return out;
}

/** A VAR_REGISTER payload. */
export function encodeRegister(segid: string, bytes: number): Buffer {
  return Buffer.from(JSON.stringify({ segid, bytes }));
}

/** Reads a VAR_REGISTER payload; throws ProtocolError when it is not one. */
export function parseRegister(payload: Uint8Array): { segid: string; bytes: number } {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch (e) {
    throw new ProtocolError(`VAR_REGISTER payload is not JSON: ${(e as Error).message}`);
  }
  const { segid, bytes } = (value ?? {}) as { segid?: unknown; bytes?: unknown };
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0) throw new ProtocolError('VAR_REGISTER without a size');
  if (typeof segid !== 'string') throw new ProtocolError('VAR_REGISTER without a segment');
  return { segid, bytes };
}
