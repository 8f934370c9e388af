/**
 * The rpmem client, librpmem's API over TCP, in one import: reaching a
 * target's daemon (launch.ts: over ssh, or a daemon mprun started), a pool's
 * lanes (lanes.ts: persist, flush, drain, read), and pools themselves
 * (pool.ts: create, open, set_attr, close, remove). Each connection matches
 * replies to requests with core/channel.ts (connection.ts).
 */
export { daemonCommand, spawnDaemon, sshArgv, type DaemonEndpoint, type LaunchOptions, type Target } from './launch.js';
export { RpmemLanes, type LaneOptions, type PersistOptions, type PoolDescriptor, type WriteOptions } from './lanes.js';
export { create, list, open, remove, RpmemPool, type CreateOptions, type OpenOptions, type RemoveOptions } from './pool.js';
