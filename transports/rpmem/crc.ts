/** CRC32C (Castagnoli) from the addon: SSE4.2 instructions where the CPU has them. */
import { native } from '../../native/index.js';

/** CRC32C of `bytes`; pass a previous result as `seed` to continue it. */
export function crc32c(bytes: ArrayBufferView, seed = 0): number {
  return native().crc32c(bytes, seed);
}
