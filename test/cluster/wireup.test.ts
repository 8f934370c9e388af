/**
 * Wire-up that scales (issue 12.4) on namespace nodes x 2 ranks, with
 * --net tcp and --net ucx: after init a rank holds only its node's cards, and
 * a node's first rank also its world-collective partners (leaderPeers:
 * O(log nodes)); a rank that then talks only to its neighbour on the next
 * node fetches one card and opens one link; a barrier and allreduces fetch no
 * more; the controller sent each rank O(local + fetched) cards and bytes,
 * and the whole job far fewer than p^2 cards. At 2, 4 and 8 nodes. And
 * synchronous collectives (split) of teams whose partners were never used
 * bind them blocking (cards read from mprun's connection, links connected at
 * once), on 8 nodes; so do a first sendSync and a synchronous wait behind a
 * send() not awaited to ranks never met.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { app, eventually, rankProcesses, runMprun } from '../helpers.js';
import { clusterLeftovers, clusterUnavailable, startCluster, type Cluster } from '../../bench/cluster.js';
import { leaderPeers } from '../../runtime/coll/peers.js';
import { query } from '../../transports/ucx/index.js';

const why = clusterUnavailable();
if (why !== null) console.log(`wire-up cluster tests skipped: ${why}`);
const SLOTS = 2;
const UCX_ENV = ['-x', 'UCX_TLS=tcp', '-x', 'UCX_NET_DEVICES=eth0'];

interface Stats {
  localCards: number;
  cardsFetched: number;
  linksOpened: number;
  controlBytes: number;
}

describe.skipIf(why !== null)('wire-up on first use across nodes', () => {
  let cluster: Cluster;
  let env: Record<string, string> = {};
  beforeAll(async () => {
    cluster = await startCluster(8, SLOTS);
    env = { MPRUN_SSH_ARGS: `-F ${cluster.sshConfig}`, MPRUN_NODE_TIMEOUT_MS: '5000', MPRUN_DEBUG: '1' };
  }, 60_000);
  afterAll(() => cluster?.stop());
  afterEach(async () => {
    expect(await eventually(() => clusterLeftovers(cluster).length === 0, 8000)).toBe(true);
    expect(await eventually(() => rankProcesses().length === 0, 8000)).toBe(true);
  });

  const hostfile = (nodes: number): string => {
    const f = join(cluster.dir, `hostfile-${nodes}`);
    writeFileSync(f, cluster.nodes.slice(0, nodes).map((n) => `${n.name} slots=${SLOTS}`).join('\n') + '\n');
    return f;
  };

  const nets = query().available ? ['tcp', 'ucx'] : ['tcp'];
  for (const net of nets) {
    for (const nodes of [2, 4, 8]) {
      it(`fetches O(local + used) cards per rank and O(log nodes) for a node leader (${nodes} nodes, --net ${net})`, async () => {
        const size = nodes * SLOTS;
        const r = await runMprun(['--hostfile', hostfile(nodes), '--net', net, ...(net === 'ucx' ? UCX_ENV : []), app('wireup-stats.ts')], { env, killAfterMs: 170_000 });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.split('\n').filter((l) => l.startsWith('wireup ok ')).length).toBe(size);
        const at = (phase: string): Stats[] => {
          const out: Stats[] = [];
          for (const m of r.stdout.matchAll(new RegExp(`^wireup (\\d+) ${phase} (.*)$`, 'gm'))) out[Number(m[1])] = JSON.parse(m[2]!) as Stats;
          expect(out.filter((s) => s !== undefined).length).toBe(size);
          return out;
        };
        const init = at('init');
        const ring = at('ring');
        const coll = at('collectives');
        // By slot: ranks 2n and 2n+1 on node n; the node's first rank leads it.
        const nodeOf = Array.from({ length: size }, (_, k) => Math.floor(k / SLOTS));
        let total = 0;
        for (let k = 0; k < size; k++) {
          const partners = leaderPeers(nodeOf, k).length;
          const leader = k % SLOTS === 0;
          expect(init[k]!.localCards, `rank ${k}`).toBe(SLOTS);
          // Init: only the world's collective partners (none for a node's other ranks); lg-sized, below the other leaders.
          expect(init[k]!.cardsFetched, `rank ${k} at init`).toBe(partners);
          // g +- 2^k and g ^ 2^k among the leaders: 1 of 1 other at 2 nodes, 3 of 3 at 4, 5 of 7 at 8.
          expect(partners).toBe(leader ? ({ 2: 1, 4: 3, 8: 5 } as Record<number, number>)[nodes] : 0);
          // The ring neighbour above is on the next node: one card more unless it was a partner already (leaders).
          expect(ring[k]!.cardsFetched, `rank ${k} after the ring`).toBe(leader ? partners : 1);
          // Collectives among leaders meet only the partners prepared at init.
          expect(coll[k]!.cardsFetched, `rank ${k} after the collectives`).toBe(ring[k]!.cardsFetched);
          if (net === 'tcp') expect(coll[k]!.linksOpened, `rank ${k} links`).toBe(coll[k]!.cardsFetched);
          else expect(coll[k]!.linksOpened, `rank ${k} links`).toBe(0);
          // What the controller sent: O(cards received), never O(p).
          const cards = coll[k]!.localCards + coll[k]!.cardsFetched;
          expect(coll[k]!.controlBytes, `rank ${k} bytes`).toBeLessThan(cards * 700);
          total += cards;
        }
        expect(total).toBeLessThan(size * size);
        const line = /wire-up: the controller sent (\d+) cards \((\d+) bytes\) to (\d+) ranks; the most to rank (\d+): (\d+) cards/.exec(r.stderr);
        expect(line, r.stderr).not.toBeNull();
        expect(Number(line![1])).toBe(total);
        expect(Number(line![5])).toBeLessThanOrEqual(SLOTS + Math.max(...coll.map((s) => s.cardsFetched)));
      }, 180_000);
    }
  }

  for (const net of nets) {
    it(`synchronous splits, sendSync and waits behind a send() to ranks never used bind them blocking (8 nodes, --net ${net})`, async () => {
      // --timeout: a synchronous wait that cannot bind its peers hangs; the report then says where.
      const r = await runMprun(['--hostfile', hostfile(8), '--net', net, '--timeout', '90', ...(net === 'ucx' ? UCX_ENV : []), app('split-now.ts')], { env, killAfterMs: 170_000 });
      expect(r.code, r.stderr).toBe(0);
      const oks = r.stdout.split('\n').filter((l) => l.startsWith('split-now ok '));
      expect(oks.length).toBe(16);
      // The odd ranks lead their nodes in the odd half: partners no world collective prepared.
      for (const l of oks) {
        const [, rank, json] = /^split-now ok (\d+) (.*)$/.exec(l)!;
        const s = JSON.parse(json!) as Stats & { syncBinds: number };
        if (Number(rank) % 2 === 1) expect(s.syncBinds, l).toBeGreaterThan(0);
      }
      // Point-to-point with ranks 5 and 3 away: bound inside the synchronous waits (a rank whose
      // partners were all met before binds none there; most ranks' were not).
      const p2p = [...r.stdout.matchAll(/^split-now p2p (\d+) (\d+) (\d+)$/gm)].map((m) => Number(m[3]) - Number(m[2]));
      expect(p2p.length).toBe(16);
      expect(p2p.filter((d) => d > 0).length).toBeGreaterThan(8);
    }, 180_000);
  }
});
