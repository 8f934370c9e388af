/**
 * mprun: an MPI-style HPC runtime for TypeScript on Node.js.
 *
 *   import { init } from 'mprun';
 *   const world = await init();
 */
export { init } from './bootstrap.js';
export { World, type LocalGroup } from './world.js';
export { RemoteAtomics } from './atomics.js';
export { Team, type ReduceOp } from './team.js';
export { REDUCE_OPS } from './coll/ops.js';
export { ANY_SOURCE, ANY_TAG, type Message } from './p2p.js';
export { MprunError, isMprunError, type MprunErrorCode } from '../core/errors.js';
export type { TypedArray, TypedArrayConstructor, AtomicArray, AtomicValue, Comparison } from '../core/types.js';
export { CONFIG_FIELDS } from './config.js';
export { SharedMemory, SharedVariable, Semaphore, Hole } from '../transports/dsm/shared.js';
export type { CheckpointInfo, CheckpointOptions } from './checkpoint.js';
