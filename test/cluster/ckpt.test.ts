/**
 * rpmem and checkpoint/restart across the namespace cluster, with real
 * OpenSSH: the rpmem API starting mprun-rpmemd on a node (`ssh -T
 * -oBatchMode=yes node2 ...`; its lanes listen on the address the ssh session
 * came in on), and a 2-node job checkpointing to two replicas, one on node2
 * over ssh and one on this host, killed and resumed to the same answer as a
 * job that was not.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { create, emptyAttr, open, remove } from '../../transports/rpmem/index.js';
import { root, runMprun } from '../helpers.js';
import { clusterUnavailable } from '../../bench/cluster.js';
import { useCluster } from './suite.js';

const why = clusterUnavailable();
if (why !== null) console.log(`cross-node checkpoint tests skipped: ${why}`);
const heat = join(root, 'examples', 'heat.ts');

describe.skipIf(why !== null)('rpmem and checkpoints across nodes (OpenSSH)', () => {
  // And no rpmem daemon left on any node.
  const c = useCluster((s) => expect(s.cluster.nodes.map((n) => s.onNode(n.name, "pgrep -af '[m]prun-rpmemd' || true")).join('')).toBe(''));
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mprun-ckpt-cluster-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('mprun/rpmem starts its daemon on node2 over ssh; lanes reach it at node2 address', async () => {
    const saved = process.env.RPMEM_SSH;
    process.env.RPMEM_SSH = `ssh -F ${c.cluster.sshConfig}`;
    try {
      const attr = emptyAttr();
      attr.signature = 'CLUSTER';
      const pool = await create('node2', 'remote.set', 4 * 1024 * 1024, { attr, nlanes: 2, makeSet: true, poolsetDir: join(dir, 'api') });
      expect(pool.descriptor().address).toBe(c.cluster.nodes[1]!.address);
      pool.data.fill(0x33, 4096, 4096 + 3 * 1024 * 1024);
      await pool.persist(4096, 3 * 1024 * 1024, { lane: 1 });
      await pool.close();
      // The daemon ran on node2 (its own hostname, UTS namespace) and is gone with the session.
      const again = await open('node2', 'remote.set', { poolsetDir: join(dir, 'api') });
      expect(again.attr?.signature).toBe('CLUSTER');
      const back = new Uint8Array(3 * 1024 * 1024);
      await again.read(back, 4096, { lane: 0 });
      expect(back.every((b) => b === 0x33)).toBe(true);
      await again.close();
      await remove('node2', 'remote.set', { poolsetDir: join(dir, 'api'), poolSet: true });
    } finally {
      if (saved === undefined) delete process.env.RPMEM_SSH;
      else process.env.RPMEM_SSH = saved;
    }
  }, 60_000);

  it('a 2-node job checkpoints to a replica on node2 (ssh) and one here; killed, it resumes to the same answer', async () => {
    const whole = await runMprun(['-n', '4', '--ckpt-mkdir', '--job', 'ref', '--ckpt-target', `localhost:${join(dir, 'ref')}`, heat, '--n', '256', '--steps', '200', '--every', '40']);
    expect(whole.code).toBe(0);
    const answer = /sum = (\S+)/.exec(whole.stdout)?.[1];
    expect(answer).toMatch(/^-?\d+(\.\d+)?(e[+-]\d+)?$/);
    const args = ['--hostfile', c.cluster.hostfile, '--ckpt-mkdir', '--job', 'cl', '--ckpt-target', `node2:${join(dir, 'n2')}`, '--ckpt-target', `localhost:${join(dir, 'here')}`, heat, '--n', '256', '--steps', '200', '--every', '40', '--kill-at', '90'];
    const first = await runMprun(args, { env: c.env });
    expect(first.code).toBe(137);
    expect(first.stdout).toMatch(new RegExp(`checkpoint epoch 2, .*`));
    const second = await runMprun(args, { env: c.env });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('heat: resumed from epoch 2 (step 80)');
    expect(/sum = (\S+)/.exec(second.stdout)?.[1]).toBe(answer);
    const list = await runMprun(['checkpoints', 'list', '--job', 'cl', '--ckpt-target', `node2:${join(dir, 'n2')}`, '--ckpt-target', `localhost:${join(dir, 'here')}`], { env: c.env });
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(` 5 .*node2:${join(dir, 'n2')} ok, localhost:${join(dir, 'here')} ok`));
  }, 120_000);
});
