/**
 * What UCX reports decides how puts travel (transport.ts): small puts are our
 * own active messages only where every network resource is TCP, whose RMA UCX
 * emulates in software anyway; on an RDMA network they stay UCP puts.
 */
import { describe, expect, it } from 'vitest';
import { progressSpinMicros, resourcesOf, softwareRma } from './transport.js';

const INFO = `#
# UCP context
#
#            md 0  :  self
#            md 1  :  tcp
#            md 2  :  sysv
#
#      resource 0  :  md 0  dev 0  flags -- self/memory
#      resource 1  :  md 1  dev 1  flags -- tcp/eth0
#      resource 2  :  md 1  dev 2  flags -- tcp/lo
#      resource 3  :  md 2  dev 3  flags -- sysv/memory
#`;

describe('UCX resources', () => {
  it('reads "tl/device" from ucp_context_print_info', () => {
    expect(resourcesOf(INFO)).toEqual(['self/memory', 'tcp/eth0', 'tcp/lo', 'sysv/memory']);
  });

  it('puts go as our own messages only where the network is TCP alone', () => {
    expect(softwareRma(resourcesOf(INFO))).toBe(true);
    expect(softwareRma(['tcp/eth0', 'rc_mlx5/mlx5_0:1', 'self/memory'])).toBe(false);
    expect(softwareRma(['dc_mlx5/mlx5_0:1', 'ud_verbs/mlx5_0:1'])).toBe(false);
    // No network at all (shared memory only): nothing to emulate, UCP's own puts.
    expect(softwareRma(['self/memory', 'sysv/memory', 'posix/memory', 'cma/memory'])).toBe(false);
  });
});

describe("the progress thread's polling after it served", () => {
  it('polls only where the node leaves a spare core for every rank, and never with MPRUN_SPIN_US=0', () => {
    expect(progressSpinMicros(1, 2, undefined)).toBe(50);
    expect(progressSpinMicros(2, 4, 'auto')).toBe(50);
    expect(progressSpinMicros(2, 2, undefined)).toBe(0);
    expect(progressSpinMicros(3, 4, undefined)).toBe(0);
    expect(progressSpinMicros(1, 2, '0')).toBe(0);
    expect(progressSpinMicros(1, 2, '200')).toBe(50);
  });
});
