/**
 * The UCX data path across nodes (issue 12): mprun --net ucx on the namespace
 * cluster, where UCX runs over its TCP transport on the veth link; the whole
 * rank API and every collective, the transports each rank picked, and a
 * clear error when UCX is asked for but cannot be used.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { app, root, runMprun } from '../helpers.js';
import { clusterUnavailable } from '../../bench/cluster.js';
import { query } from '../../transports/ucx/index.js';
import { useCluster } from './suite.js';

const why = clusterUnavailable() ?? (query().available ? null : `UCX is not usable: ${query().reason}`);
if (why !== null) console.log(`UCX across nodes tests skipped: ${why}`);

/** Between namespace nodes UCX must take the veth link (its shared memory would reach across them on one host). */
const UCX_ENV = ['-x', 'UCX_TLS=tcp', '-x', 'UCX_NET_DEVICES=eth0'];

describe.skipIf(why !== null)('the runtime across nodes over UCX (--net ucx)', () => {
  const c = useCluster();

  it('MPRUN_DEBUG shows UCX across nodes and xpmem within', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, '--net', 'ucx', ...UCX_ENV, '-x', 'MPRUN_DEBUG=1', join(root, 'examples', 'hello.ts')], { env: c.env });
    expect(r.code, r.stderr).toBe(0);
    // A UCX endpoint names its lanes once connected (on first use): ucx, then ucx/tcp.
    expect(r.stderr).toMatch(/mprun\[0\]: .* peers: 0:self 1:xpmem\/\w+ 2:ucx\S* 3:ucx\S*/);
    expect(r.stdout).toContain('sum of (rank + 1) over 4 ranks: 10 (expected 10)');
  }, 60_000);

  it('passes the whole rank API conformance app and every collective on 2 nodes x 2 ranks', async () => {
    const api = await runMprun(['--hostfile', c.cluster.hostfile, '--net', 'ucx', ...UCX_ENV, '-x', 'EXPECT_SIZE=4', '-x', 'EXPECT_NODES=2', app('api.ts')], { env: c.env });
    expect(api.stderr).toBe('');
    expect(api.code).toBe(0);
    expect(api.stdout.trim().split('\n').sort()).toEqual(['api ok 0', 'api ok 1', 'api ok 2', 'api ok 3']);
    const coll = await runMprun(['--hostfile', c.cluster.hostfile, '--net', 'ucx', ...UCX_ENV, '--map-by', 'node', app('coll.ts')], { env: c.env, killAfterMs: 170_000 });
    expect(coll.stderr).toBe('');
    expect(coll.code).toBe(0);
    expect(coll.stdout.trim().split('\n').sort()).toEqual(['coll ok 0', 'coll ok 1', 'coll ok 2', 'coll ok 3']);
  }, 240_000);

  it('shared variables, semaphores and holes work unchanged with the data over UCX', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, '--net', 'ucx', ...UCX_ENV, app('dsm.ts')], { env: c.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['dsm ok 0', 'dsm ok 1', 'dsm ok 2', 'dsm ok 3']);
  }, 60_000);

  // A target asleep in a wait held every put's quiet, message and memory flag for its 20 ms
  // slice (1,500 rounds of each: about 100 s); woken by the progress thread, a few seconds.
  // --bind-to none: namespace nodes share this machine's cores, and a binding per node puts
  // both ranks on core 0 (README, "Across nodes again"), which makes every round a turn of it.
  it('a rank asleep in recv or waitUntil does not hold up puts, quiet and messages through it', async () => {
    const r = await runMprun(['--host', 'node1:1,node2:1', '--bind-to', 'none', '--net', 'ucx', ...UCX_ENV, app('ucx-wake.ts')], { env: c.env, killAfterMs: 45_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['ucx-wake ok 0', 'ucx-wake ok 1']);
  }, 60_000);

  // Without the progress thread nothing watched the worker while a rank slept: every message,
  // quiet and memory flag waited for the sleeper's 20 ms slice (a ping-pong 6.5 ms a message).
  // MPRUN_SPIN_US=0 makes every wait sleep at once. 4,000 rounds of each pattern: about 5 s
  // here; half a slice a round would take minutes, and a wake thread that missed a rank
  // asleep again before it looked (the first version of the fix) took 40 s.
  it('without the progress thread, a rank asleep is woken by what arrives for it', async () => {
    const r = await runMprun(['--host', 'node1:1,node2:1', '--bind-to', 'none', '--net', 'ucx', ...UCX_ENV, '-x', 'MPRUN_UCX_PROGRESS_THREAD=0', '-x', 'MPRUN_SPIN_US=0', '-x', 'ROUNDS=4000', app('ucx-wake.ts')], {
      env: c.env,
      killAfterMs: 30_000,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['ucx-wake ok 0', 'ucx-wake ok 1']);
  }, 45_000);

  it('--net ucx where UCX cannot be used stops the job with the reason', async () => {
    const r = await runMprun(['--hostfile', c.cluster.hostfile, '--net', 'ucx', '-x', 'MPRUN_UCX_LIB=/nonexistent/libucp.so.0', join(root, 'examples', 'hello.ts')], { env: c.env });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--net ucx: UCX is not usable here: .*\/nonexistent\/libucp\.so\.0/);
  }, 60_000);
});
