import { afterEach, describe, expect, it } from 'vitest';
import { cpus } from 'node:os';
import { checkMappings, configVariables, formatBytes, parseBytes, readConfig } from './config.js';

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

describe('configuration', () => {
  it('parses byte counts with suffixes', () => {
    expect(parseBytes('65536', 'x')).toBe(65536);
    expect(parseBytes('64K', 'x')).toBe(65536);
    expect(parseBytes('1g', 'x')).toBe(1024 ** 3);
    expect(parseBytes('2MiB', 'x')).toBe(2 * 1024 ** 2);
    expect(() => parseBytes('lots', 'MPRUN_HEAP_SIZE')).toThrow(/MPRUN_HEAP_SIZE must be a byte count/);
  });

  it('reads the environment, with defaults, and refuses bad values', () => {
    process.env.MPRUN_HEAP_SIZE = '1M';
    process.env.MPRUN_QUEUE_SIZE = '128K';
    const c = readConfig(2);
    expect(c.heapBytes).toBe(1024 * 1024);
    expect(c.queueBytes).toBe(128 * 1024);
    expect(c.eagerLimit).toBeLessThanOrEqual(c.queueBytes / 4);
    process.env.MPRUN_QUEUE_SIZE = '100000';
    expect(() => readConfig(2)).toThrow(/power of two/);
  });

  it('spins briefly and yields when ranks outnumber cores', () => {
    delete process.env.MPRUN_SPIN_US;
    delete process.env.MPRUN_COLL_POLL_US;
    expect(readConfig(1).yieldWhileSpinning).toBe(false);
    const over = cpus().length + 1;
    expect(readConfig(over).yieldWhileSpinning).toBe(true);
    expect(readConfig(over).spinMicros).toBeLessThan(readConfig(1).spinMicros);
    // The steps of collectives do not poll then; their native fast paths poll the spin, yielding.
    expect(readConfig(over).collPollNs).toBe(0);
    expect(readConfig(over).collFastPollNs).toBe(readConfig(over).spinMicros * 1000);
    // The native receive polls the spin too, but not when ranks outnumber cores (it does not yield).
    delete process.env.MPRUN_RECV_POLL_NS;
    expect([readConfig(1).recvFastPollNs, readConfig(over).recvFastPollNs]).toEqual([readConfig(1).spinMicros * 1000, 0]);
    process.env.MPRUN_COLL_POLL_US = '7';
    expect([readConfig(over).collPollNs, readConfig(over).collFastPollNs]).toEqual([7000, 7000]);
  });

  it('warms up only when asked (MPRUN_WARMUP rounds), and refuses what is not a count', () => {
    delete process.env.MPRUN_WARMUP;
    expect(readConfig(2).warmupRounds).toBe(0);
    process.env.MPRUN_WARMUP = '500';
    expect(readConfig(2).warmupRounds).toBe(500);
    for (const bad of ['-1', '2.5', 'lots']) {
      process.env.MPRUN_WARMUP = bad;
      expect(() => readConfig(2)).toThrow(/MPRUN_WARMUP must be a whole number/);
    }
  });

  it('refuses sizes one shared mapping cannot hold, naming the variable and the limit', () => {
    const base = { heapBytes: 256 * 1024 ** 2, queueBytes: 64 * 1024, teamSlots: 32, collBankBytes: 1024 ** 2 };
    const limit = 4 * 1024 ** 3;
    expect(() => checkMappings(base, 8, limit)).not.toThrow();
    expect(() => checkMappings({ ...base, heapBytes: 5 * 1024 ** 3 }, 2, limit)).toThrow(/MPRUN_HEAP_SIZE=5G is too large: .*at most 4G.*use at most MPRUN_HEAP_SIZE=4G/);
    expect(() => checkMappings({ ...base, teamSlots: 1024, collBankBytes: 4 * 1024 ** 2 }, 2, limit)).toThrow(/MPRUN_TEAM_SLOTS=1024 with MPRUN_COLL_BANK=4M/);
    expect(() => checkMappings({ ...base, queueBytes: 2 * 1024 ** 3 }, 8, limit)).toThrow(/MPRUN_QUEUE_SIZE=2G is too large for 8 ranks on a node: .*use at most MPRUN_QUEUE_SIZE=\d+[KM]/);
    process.env.MPRUN_HEAP_SIZE = '64G';
    expect(() => readConfig(2)).toThrow(expect.objectContaining({ code: 'ERR_MPRUN_ARG' }));
    expect(formatBytes(4.5 * 1024 ** 3)).toBe('4.5G');
    expect(formatBytes(65536)).toBe('64K');
  });
});

describe('configVariables', () => {
  it("forwards the job-wide settings of mprun's environment, not a node's own nor anything undeclared", () => {
    const env = {
      MPRUN_SPIN_US: '7',
      MPRUN_NET: 'ucx',
      MPRUN_COLL_REPRODUCIBLE: '1',
      MPRUN_XPMEM_BACKEND: 'kernel', // a node's own
      MPRUN_HANG_REPORT_MS: '5', // mprun computes it
      MPRUN_RANK: '3', // a parent job's
      MPRUN_SECRET: 'parent',
      HOME: '/root',
    };
    expect(configVariables(env)).toEqual({ MPRUN_SPIN_US: '7', MPRUN_NET: 'ucx', MPRUN_COLL_REPRODUCIBLE: '1' });
  });

  it('forwards the transports\' comparison switches, which ranks on other nodes read (they had only the node\'s environment)', () => {
    expect(configVariables({ MPRUN_DSM_NATIVE_AMO: '0', MPRUN_UCX_PUTS: 'rma' })).toEqual({ MPRUN_DSM_NATIVE_AMO: '0', MPRUN_UCX_PUTS: 'rma' });
  });
});
