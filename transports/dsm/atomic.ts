/** Atomic operands on the DSM wire (the operations themselves on memory: transports/atomics.ts). */

/** Operands and results travel as 8 bytes: bigints as int64, numbers as float64 (exact for every 32-bit integer). */
export function writeOperand(out: Buffer, at: number, v: number | bigint): void {
  if (typeof v === 'bigint') out.writeBigInt64LE(BigInt.asIntN(64, v), at);
  else out.writeDoubleLE(v, at);
}

export function readOperand(b: Uint8Array, at: number, big: boolean, unsigned: boolean): number | bigint {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (!big) return dv.getFloat64(at, true);
  return unsigned ? dv.getBigUint64(at, true) : dv.getBigInt64(at, true);
}
