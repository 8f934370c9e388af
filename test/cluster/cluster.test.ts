/** The test cluster itself: separate hosts in all that a job can see. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterUnavailable, startCluster, type Cluster } from '../../bench/cluster.js';
import { root } from '../helpers.js';

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

  it('removes everything when the process that made it is killed by a signal or exits without stopping it', async () => {
    for (const end of ["process.kill(process.pid, 'SIGTERM')", 'process.exit(3)']) {
      const program = `
        import { startCluster } from ${JSON.stringify(pathToFileURL(join(root, 'dist', 'bench', 'cluster.js')).href)};
        const c = await startCluster(1);
        console.log(JSON.stringify({ dir: c.dir, ns: c.nodes[0].netns }));
        ${end};
        await new Promise((r) => setTimeout(r, 60_000));
      `;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', program], { encoding: 'utf8', timeout: 60_000 });
      const made = JSON.parse(r.stdout.trim().split('\n')[0]!) as { dir: string; ns: string };
      expect(r.status === 3 || r.signal === 'SIGTERM', `${end}: ${r.status} ${r.signal} ${r.stderr}`).toBe(true);
      expect(existsSync(made.dir), end).toBe(false);
      expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout, end).not.toContain(made.ns);
      expect(spawnSync('pgrep', ['-f', made.dir], { encoding: 'utf8' }).stdout.trim(), end).toBe('');
    }
  }, 60_000);
});
