/**
 * A node lost in the middle of collectives (issue 12, "bad input"): every rank
 * loops barriers, 8-byte and 1 MiB allreduces and broadcasts across the two
 * nodes (test/apps/coll-loop.ts) over --net tcp and --net ucx, and node2's
 * agent is SIGKILLed or its veth taken down. mprun must exit non-zero within
 * seconds naming node2 and its ranks, and nothing may stay on any node: node2,
 * still cut off, must stop its ranks by itself; then useCluster's afterEach
 * looks at every node (processes and /dev/shm files).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { app, eventually, runMprun } from '../helpers.js';
import { clusterUnavailable } from '../../bench/cluster.js';
import { query } from '../../transports/ucx/index.js';
import { useCluster } from './suite.js';

const why = clusterUnavailable();
if (why !== null) console.log(`node-lost-mid-collective tests skipped: ${why}`);
const noUcx = query().available ? null : `UCX is not usable: ${query().reason}`;
if (why === null && noUcx !== null) console.log(`node-lost-mid-collective tests over UCX skipped: ${noUcx}`);

/** Between namespace nodes UCX must take the veth link (as in ucx.test.ts). */
const NETS: Array<{ net: string; args: string[]; skip: boolean }> = [
  { net: 'tcp', args: ['--net', 'tcp'], skip: false },
  { net: 'ucx', args: ['--net', 'ucx', '-x', 'UCX_TLS=tcp', '-x', 'UCX_NET_DEVICES=eth0'], skip: noUcx !== null },
];

/**
 * The agents and ranks of mprun running in a node's network namespace, read
 * from here without that node's network (ip netns pids, /proc/<pid>/cmdline).
 */
function stillOn(netns: string): string[] {
  const pids = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.trim() !== '');
  return pids.flatMap((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      return /mprun\.js --agent|rank-main\.js|\.rank\.[mc]js/.test(cmd) ? [`${pid} ${cmd}`] : [];
    } catch {
      return []; // gone meanwhile
    }
  });
}

describe.skipIf(why !== null)('a node lost in the middle of collectives', () => {
  const c = useCluster();

  /** Runs coll-loop.ts and calls `fault` once every rank loops (and a little later, so collectives are in flight). */
  const loopAndFault = (args: string[], fault: () => void): Promise<{ code: number | null; stderr: string; ms: number; faulted: boolean; afterFault: number }> => {
    let faulted = false;
    let at = 0;
    return runMprun(['--hostfile', c.cluster.hostfile, ...args, app('coll-loop.ts')], {
      env: c.env,
      killAfterMs: 50_000,
      onStdout: (text) => {
        if (!faulted && (text.match(/looping collectives/g) ?? []).length === 4) {
          faulted = true;
          setTimeout(() => {
            at = Date.now();
            fault();
          }, 500);
        }
      },
    }).then((r) => ({ ...r, faulted, afterFault: Date.now() - at }));
  };

  for (const { net, args, skip } of NETS) {
    it.skipIf(skip)(`--net ${net}: node2's agent SIGKILLed mid-collective aborts the job in seconds naming node2`, async () => {
      const r = await loopAndFault(args, () => c.onNode('node2', "pkill -KILL -f '[m]prun.js --agent'"));
      expect(r.faulted, r.stderr).toBe(true);
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(/mprun: node node2 lost: its agent disconnected; ranks 2-3 ran there; aborting the job/);
      // The node is the cause: not a surviving rank's failure, nor errors of ranks stopped by the abort.
      expect(r.stderr).not.toMatch(/rank \d+ \(pid|Error/);
      expect(r.afterFault, r.stderr).toBeLessThan(10_000);
    }, 60_000);

    it.skipIf(skip)(`--net ${net}: node2's network cut mid-collective aborts the job in seconds naming node2`, async () => {
      const netns = c.cluster.nodes[1]!.netns;
      const veth = `${netns.replace(/n2$/, '')}v2`;
      let before: string[] = [];
      const r = await loopAndFault(args, () => {
        before = stillOn(netns);
        spawnSync('ip', ['link', 'set', veth, 'down']);
      });
      // What stillOn sees there while the job runs: node2's agent and its two ranks.
      expect(before.filter((l) => /\.rank\.mjs/.test(l)), before.join('\n')).toHaveLength(2);
      expect(before.filter((l) => /mprun\.js --agent/.test(l)), before.join('\n')).toHaveLength(1);
      // Still cut off, node2 must clean up by itself: its agent, silent mprun for its
      // heartbeat timeout (5 s there), stops its ranks and exits. (useCluster's afterEach
      // looks again over ssh once the link is back.)
      let left: string[] = [];
      try {
        await eventually(() => (left = stillOn(netns)).length === 0, 12_000);
      } finally {
        spawnSync('ip', ['link', 'set', veth, 'up']);
      }
      expect(left).toEqual([]);
      expect(r.faulted, r.stderr).toBe(true);
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(/mprun: node node2 lost: no heartbeat for 3000 ms \(network or node down\); ranks 2-3 ran there; aborting the job/);
      expect(r.stderr).not.toMatch(/rank \d+ \(pid|Error/);
      expect(r.afterFault, r.stderr).toBeLessThan(10_000);
    }, 60_000);
  }
});
