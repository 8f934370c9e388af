import { afterEach, describe, expect, it } from 'vitest';
import { parseBytes, readConfig } from './config.js';

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
    expect(readConfig(1).yieldWhileSpinning).toBe(false);
    expect(readConfig(1024).yieldWhileSpinning).toBe(true);
    expect(readConfig(1024).spinMicros).toBeLessThan(readConfig(1).spinMicros);
  });
});
