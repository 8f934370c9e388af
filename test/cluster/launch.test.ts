/**
 * mprun across the namespace cluster: ssh (the default launch path, with the
 * cluster's ssh configuration in MPRUN_SSH_ARGS) and --launch-agent, hostfiles
 * and --host, placement, exit codes, signals, a lost node and a cut network.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { app, runMprun } from '../helpers.js';
import { clusterUnavailable } from '../../bench/cluster.js';
import { useCluster } from './suite.js';

const why = clusterUnavailable();
if (why !== null) console.log(`cluster launch tests skipped: ${why}`);

describe.skipIf(why !== null)('mprun across nodes', () => {
  const c = useCluster();
  const where = app('where.ts');

  const lines = (out: string): string[] => out.trim().split('\n').filter((l) => l.startsWith('rank ')).sort();

  it('starts ranks on every node of a hostfile over ssh, filling nodes by slot', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, where], { env: c.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(lines(r.stdout)).toEqual([
      'rank 0 of 4 on node1 (node node1, local 0 of 2) shm-probe=false',
      'rank 1 of 4 on node1 (node node1, local 1 of 2) shm-probe=false',
      'rank 2 of 4 on node2 (node node2, local 0 of 2) shm-probe=false',
      'rank 3 of 4 on node2 (node node2, local 1 of 2) shm-probe=false',
    ]);
  });

  it('--host with --map-by node round-robins, and --launch-agent replaces ssh', async () => {
    const r = await runMprun(['-n', '4', '--host', 'node1:2,node2:2', '--map-by', 'node', '--launch-agent', `ssh -F ${c.cluster.sshConfig}`, where]);
    expect(r.code).toBe(0);
    expect(lines(r.stdout).map((l) => /^rank (\d) of 4 on (node\d)/.exec(l)!.slice(1).join('@'))).toEqual(['0@node1', '1@node2', '2@node1', '3@node2']);
  });

  it('a connection to mprun without the secret, or with garbage, from another node is closed and logged; the job goes on', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, app('intruder-raw.ts')], { env: c.env });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('intruder closed: wrong secret');
    expect(r.stdout).toContain('intruder closed: garbage');
    expect(r.stdout.match(/rank \d done/g)).toHaveLength(4);
    expect(r.stderr).toContain('closed a control connection: wrong job secret');
    expect(r.stderr).toMatch(/closed a control connection: (frame length|undecodable|frame without)/);
  });

  it("mprun's own settings (MPRUN_* configuration variables, MPRUN_NODE_ARGS) reach the ranks on every node; other variables stay behind", async () => {
    const env = { ...c.env, MPRUN_SPIN_US: '7', MPRUN_COLL_REPRODUCIBLE: '1', MPRUN_NODE_ARGS: '--no-deprecation', MPRUN_NOT_A_SETTING: 'x' };
    const r = await runMprun(['--hostfile', c.cluster.hostfile, where, 'env'], { env });
    expect(r.code).toBe(0);
    const ranks = r.stdout.split('\n').filter((l) => / spin=/.test(l)).sort();
    expect(ranks).toEqual([0, 1, 2, 3].map((k) => `rank ${k} spin=7 reproducible=1 other=undefined flags=--no-deprecation`));
  });

  it("hang reports of ranks on other nodes name the app's .ts lines (the bundle's source map travels with it)", async () => {
    const r = await runMprun(['-n', '4', '--host', 'node1:2,node2:2', '--timeout', '4', app('hang.ts'), 'recv'], { env: c.env });
    expect(r.code).toBe(124);
    for (const rank of [0, 1, 2, 3]) expect(r.stderr).toMatch(new RegExp(`rank ${rank}: recv\\(source ${(rank + 1) % 4}, tag 5\\), for [\\d.]+ s, called at \\S*hang\\.ts:15:\\d+`));
  });

  it('a remote rank exiting 5 makes mprun exit 5, naming rank, pid and node', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, where, 'fail', '3', '5'], { env: c.env });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/rank 3 \(pid \d+ on node2\) exited with code 5; aborting the job/);
  });

  it('SIGTERM to mprun stops the ranks on every node', async () => {
    let sent = false;
    const r = await runMprun(['--hostfile', c.cluster.hostfile, where, 'sleep'], {
      env: c.env,
      onStdout: (text, child) => {
        if (!sent && (text.match(/pid \d+/g) ?? []).length === 4) {
          sent = true;
          child.kill('SIGTERM');
        }
      },
    });
    expect(sent).toBe(true);
    expect(r.code).toBe(128 + 15);
  });

  it('a killed node agent aborts the job within seconds, naming the node', async () => {
    let killed = false;
    const r = await runMprun(['--hostfile', c.cluster.hostfile, where, 'sleep'], {
      env: c.env,
      onStdout: (text) => {
        if (!killed && (text.match(/pid \d+/g) ?? []).length === 4) {
          killed = true;
          c.onNode('node2', "pkill -KILL -f '[m]prun.js --agent'");
        }
      },
    });
    expect(killed).toBe(true);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/node node2 lost/);
    expect(r.ms).toBeLessThan(20_000);
  });

  it("a node whose network is cut (veth down) aborts the job within seconds, naming it", async () => {
    let cut = false;
    const veth = `${c.cluster.nodes[1]!.netns.replace(/n2$/, '')}v2`;
    const r = await runMprun(['--hostfile', c.cluster.hostfile, where, 'sleep'], {
      env: c.env,
      onStdout: (text) => {
        if (!cut && (text.match(/pid \d+/g) ?? []).length === 4) {
          cut = true;
          spawnSync('ip', ['link', 'set', veth, 'down']);
        }
      },
    });
    spawnSync('ip', ['link', 'set', veth, 'up']);
    expect(cut).toBe(true);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/node node2 lost: no heartbeat for 3000 ms/);
    expect(r.ms).toBeLessThan(20_000);
  });
});
