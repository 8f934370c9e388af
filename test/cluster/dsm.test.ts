/**
 * The runtime across nodes: the whole conformance suite (every call of the
 * rank API and every collective) on a 2-node x 2-rank job over the namespace
 * cluster, so every pair of ranks is either xpmem (same node) or dsm (across
 * the veth link); shared variables, holes and semaphores; and the data path's
 * faults: intruders on an agent's data port, a node lost mid-transfer.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { app, root, runMprun } from '../helpers.js';
import { clusterUnavailable } from '../../bench/cluster.js';
import { useCluster } from './suite.js';
import { DSM_VERSION } from '../../transports/dsm/frames.js';

const why = clusterUnavailable();
if (why !== null) console.log(`cross-node runtime tests skipped: ${why}`);

describe.skipIf(why !== null)('the runtime across nodes (dsm)', () => {
  const c = useCluster();

  it('passes the whole rank API conformance app on 2 nodes x 2 ranks', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, '-x', 'EXPECT_SIZE=4', '-x', 'EXPECT_NODES=2', app('api.ts')], { env: c.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['api ok 0', 'api ok 1', 'api ok 2', 'api ok 3']);
  }, 60_000);

  it('passes every collective on 2 nodes x 2 ranks, and with ranks round-robin over the nodes', async () => {
    for (const mapBy of ['slot', 'node']) {
      const r = await runMprun(['--hostfile', c.cluster.hostfile, '--map-by', mapBy, app('coll.ts')], { env: c.env });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split('\n').sort()).toEqual(['coll ok 0', 'coll ok 1', 'coll ok 2', 'coll ok 3']);
    }
  }, 120_000);

  it('messages larger than one frame (16 MiB) cross nodes whole, both ways at once', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, app('bigmsg.ts')], { env: c.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['bigmsg ok 0', 'bigmsg ok 1', 'bigmsg ok 2', 'bigmsg ok 3']);
  }, 90_000);

  it('MPRUN_DEBUG shows the transport serving each peer: xpmem on the node, dsm across', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, '-x', 'MPRUN_DEBUG=1', join(root, 'examples', 'hello.ts')], { env: c.env });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/mprun\[0\]: .* peers: 0:self 1:xpmem\/\w+ 2:dsm 3:dsm/);
    expect(r.stderr).toMatch(/mprun\[3\]: .* peers: 0:dsm 1:dsm 2:xpmem\/\w+ 3:self/);
    expect(r.stdout).toContain('sum of (rank + 1) over 4 ranks: 10 (expected 10)');
  }, 60_000);

  it('shared variables, atomics at the home, semaphores and holes work across nodes', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, app('dsm.ts')], { env: c.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['dsm ok 0', 'dsm ok 1', 'dsm ok 2', 'dsm ok 3']);
  }, 60_000);

  it('an agent\'s data port closes and logs intruders and malformed frames; the job goes on', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, app('intruder-dsm.ts')], { env: c.env });
    expect(r.code).toBe(0);
    for (const what of ['wrong secret', 'garbage', 'version 99', 'put before auth']) expect(r.stdout).toContain(`intruder closed: ${what}`);
    expect(r.stdout).toContain('intruder authenticated, then closed: put outside the heap');
    expect(r.stdout).toContain('intruder authenticated, then closed: put to no such rank');
    expect(r.stdout.match(/rank \d done/g)).toHaveLength(4);
    expect(r.stderr).toMatch(/mprun agent on node1: closed a data connection from [\d.]+: wrong job secret/);
    expect(r.stderr).toMatch(new RegExp(`closed a data connection .*: dsm frame version 99, expected ${DSM_VERSION}`));
    expect(r.stderr).toMatch(/closed a data connection .*: first frame was PUT, not AUTH/);
    expect(r.stderr).toMatch(/closed a data connection .*\(rank 0\): PUT of \[1099511627776, 1099511627784\) is outside rank 0's heap/);
    expect(r.stderr).toMatch(/closed a data connection .*\(rank 0\): PUT for rank 9, which is not on this node/);
  }, 60_000);

  /** Runs stream.ts and calls `fault` once every rank streams data across the link. */
  const streamAndFault = (fault: () => void): Promise<{ code: number | null; stderr: string; ms: number; faulted: boolean }> => {
    let faulted = false;
    return runMprun(['--hostfile', c.cluster.hostfile, app('stream.ts')], {
      env: c.env,
      onStdout: (text) => {
        if (!faulted && (text.match(/streaming/g) ?? []).length === 4) {
          faulted = true;
          setTimeout(fault, 300);
        }
      },
    }).then((r) => ({ ...r, faulted }));
  };

  it('an agent killed while ranks stream data to its node: the job aborts naming the node, nothing is left', async () => {
    const r = await streamAndFault(() => c.onNode('node2', "pkill -KILL -f '[m]prun.js --agent'"));
    expect(r.faulted).toBe(true);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/node node2 lost/);
    expect(r.ms).toBeLessThan(20_000);
  }, 60_000);

  it('a network cut while ranks stream data across it: the job aborts in seconds naming the node', async () => {
    const veth = `${c.cluster.nodes[1]!.netns.replace(/n2$/, '')}v2`;
    const r = await streamAndFault(() => spawnSync('ip', ['link', 'set', veth, 'down']));
    spawnSync('ip', ['link', 'set', veth, 'up']);
    expect(r.faulted).toBe(true);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/node node2 lost/);
    expect(r.ms).toBeLessThan(20_000);
  }, 60_000);
});
