/**
 * `mprun/rpmem`: remote persistent-memory pools, librpmem's API over TCP
 * (create, open, persist, flush, drain, read, setAttr, close, remove; lanes;
 * sticky errors with librpmem's errno names), served by `mprun-rpmemd`.
 */
export { create, open, remove, list, RpmemLanes, RpmemPool, spawnDaemon, daemonCommand } from './client.js';
export type { CreateOptions, DaemonEndpoint, LaneOptions, OpenOptions, PersistOptions, WriteOptions, PoolDescriptor, RemoveOptions, Target } from './client.js';
export { emptyAttr, type PoolAttr } from './header.js';
export { MIN_PART, MIN_POOL, POOL_HDR_SIZE, parsePoolSet, formatPoolSet, type PoolSet } from './poolset.js';
export { crc32c } from './crc.js';
export type { PersistMethod } from './protocol.js';
