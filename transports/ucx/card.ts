/**
 * A rank's UCX "business card": what a peer needs to reach it and its
 * symmetric heap. Plain strings and numbers, so a JSON or msgpack card (the
 * launcher's key-value store, PMIx) carries it as is. About 150 bytes over
 * UCX_TLS=tcp, 350 with every transport.
 */
import { MprunError } from '../../core/errors.js';
import { native } from '../../native/index.js';

export interface UcxCard {
  /** The worker's address (ucp_worker_get_address), base64. */
  address: string;
  /** The heap's base address in the owner's process, decimal (an rkey names virtual addresses). */
  heap: string;
  /** The heap's length in bytes. */
  heapBytes: number;
  /** The heap's packed remote key (ucp_rkey_pack), base64. */
  rkey: string;
  /**
   * CRC32C of the address and rkey bytes: UCX aborts the process on an
   * address it cannot parse (an assertion in ucp_address_unpack), so a card
   * damaged on its way is refused here, before UCX sees it.
   */
  check: number;
}

/** The card's check value over its worker address and rkey. */
export function cardCheck(address: Uint8Array, rkey: Uint8Array): number {
  const n = native();
  return n.crc32c(rkey, n.crc32c(address));
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** Checks a card's shape (it crossed a process boundary); throws a TypeError naming the field. */
export function checkCard(card: unknown, who: string): UcxCard {
  const c = card as Partial<UcxCard> | null;
  if (c === null || typeof c !== 'object') throw new TypeError(`${who}'s UCX card is not an object`);
  if (typeof c.address !== 'string' || c.address.length === 0) throw new TypeError(`${who}'s UCX card has no worker address`);
  if (typeof c.heap !== 'string' || !/^\d+$/.test(c.heap)) throw new TypeError(`${who}'s UCX card has no heap address`);
  if (typeof c.heapBytes !== 'number' || !Number.isSafeInteger(c.heapBytes) || c.heapBytes < 0) throw new TypeError(`${who}'s UCX card has no heap length`);
  if (typeof c.rkey !== 'string' || c.rkey.length === 0) throw new TypeError(`${who}'s UCX card has no heap key`);
  if (typeof c.check !== 'number' || cardCheck(fromBase64(c.address), fromBase64(c.rkey)) !== c.check) {
    throw new MprunError('ERR_MPRUN_UCX', `${who}'s UCX card is damaged (its worker address or heap key does not match its check value): not handed to UCX`);
  }
  return c as UcxCard;
}
