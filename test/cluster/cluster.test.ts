/** The test cluster itself: separate hosts in all that a job can see. */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterUnavailable, startCluster, type Cluster } from '../../bench/cluster.js';

const why = clusterUnavailable();
if (why !== null) console.log(`cluster tests skipped: ${why}`);

describe.skipIf(why !== null)('namespace cluster', () => {
  let cluster: Cluster;
  const ssh = (node: string, cmd: string): string => {
    const r = spawnSync('ssh', ['-F', cluster.sshConfig, '-T', '-oBatchMode=yes', node, cmd], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ssh ${node} ${cmd}: ${r.stderr}`);
    return r.stdout.trim();
  };
  // sshd is the first process of its node's PID namespace
  const onPidOf = (): string => ssh('node1', 'pgrep -o sshd');
  beforeAll(async () => {
    cluster = await startCluster(2);
  }, 30_000);
  afterAll(() => cluster?.stop());

  it('gives every node its own hostname and address, reachable by ssh', () => {
    expect(ssh('node1', 'hostname')).toBe('node1');
    expect(ssh('node2', 'hostname')).toBe('node2');
    expect(ssh('node1', 'ip -4 -o addr show dev eth0')).toContain(`${cluster.nodes[0]!.address}/24`);
    // node2 reaches node1's sshd over the cluster network
    expect(ssh('node2', `timeout 3 bash -c '</dev/tcp/${cluster.nodes[0]!.address}/22' && echo ok`)).toBe('ok');
  });

  it('gives every node its own processes', () => {
    const pid = onPidOf();
    expect(pid).toBe('1');
  });

  it('gives every node a private /dev/shm', () => {
    ssh('node1', 'echo one > /dev/shm/mprun-cluster-probe');
    expect(ssh('node1', 'cat /dev/shm/mprun-cluster-probe')).toBe('one');
    expect(ssh('node2', 'test -e /dev/shm/mprun-cluster-probe && echo yes || echo no')).toBe('no');
    expect(spawnSync('test', ['-e', '/dev/shm/mprun-cluster-probe']).status).not.toBe(0);
  });

  it('removes everything when stopped', async () => {
    const c = await startCluster(1);
    const ns = c.nodes[0]!.netns;
    c.stop();
    expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout).not.toContain(ns);
  }, 30_000);
});
