import { describe, expect, it } from 'vitest';
import { fnv1a64 } from '../launcher/compile.js';
import { randomHex } from './random.js';

describe('randomHex', () => {
  it('gives 2 x bytes hexadecimal digits, different every call', () => {
    const a = randomHex(32);
    const b = randomHex(32);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(b).toMatch(/^[0-9a-f]{64}$/);
    expect(a).not.toBe(b);
    expect(randomHex(3)).toMatch(/^[0-9a-f]{6}$/);
  });

  it('draws evenly (every hex digit appears in 4 KiB)', () => {
    const digits = new Set(randomHex(4096));
    expect(digits.size).toBe(16);
  });
});

describe('fnv1a64 (the rank bundle cache key)', () => {
  it('matches the published FNV-1a 64-bit test vectors', () => {
    expect(fnv1a64('')).toBe('cbf29ce484222325');
    expect(fnv1a64('a')).toBe('af63dc4c8601ec8c');
    expect(fnv1a64('foobar')).toBe('85944171f73967e8');
  });

  it('hashes the UTF-8 bytes of the text', () => {
    expect(fnv1a64('é')).not.toBe(fnv1a64('e'));
    expect(fnv1a64('/a/b.ts')).not.toBe(fnv1a64('/a/c.ts'));
  });
});
