/** The setup every cluster test file shares (kept apart from cluster.ts, which the benchmarks import without vitest). */
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { eventually, rankProcesses } from '../helpers.js';
import { clusterLeftovers, onNode, startCluster, type Cluster } from '../../bench/cluster.js';

export interface ClusterSuite {
  /** Set once the suite's beforeAll ran. */
  cluster: Cluster;
  /** The environment mprun needs to reach the nodes (their ssh config; a short node timeout). */
  env: Record<string, string>;
  /** Runs `cmd` on a node over ssh; its trimmed stdout. */
  onNode(node: string, cmd: string): string;
}

/**
 * For a describe block: a 2-node x 2-slot cluster up for its tests, and after
 * every test the check that nothing of mprun is left on any node (processes,
 * /dev/shm files) nor here (ranks), plus `alsoGone` when given.
 */
export function useCluster(alsoGone?: (suite: ClusterSuite) => void | Promise<void>): ClusterSuite {
  const suite: ClusterSuite = {
    cluster: undefined as unknown as Cluster,
    env: {},
    onNode: (node, cmd) => onNode(suite.cluster, node, cmd),
  };
  beforeAll(async () => {
    suite.cluster = await startCluster(2, 2);
    suite.env = { MPRUN_SSH_ARGS: `-F ${suite.cluster.sshConfig}`, MPRUN_NODE_TIMEOUT_MS: '3000' };
  }, 30_000);
  afterAll(() => suite.cluster?.stop());
  afterEach(async () => {
    await eventually(() => clusterLeftovers(suite.cluster).length === 0, 8000);
    expect(clusterLeftovers(suite.cluster)).toEqual([]);
    expect(await eventually(() => rankProcesses().length === 0)).toBe(true);
    await alsoGone?.(suite);
  });
  return suite;
}
