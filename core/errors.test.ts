import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MprunError } from './errors.js';

describe('MprunError', () => {
  it('prints only the fields it has (a rank dump shows no "errno: undefined")', () => {
    const plain = new MprunError('ERR_MPRUN_COLLECTIVE_MISMATCH', 'collective mismatch in alloc');
    expect(Object.keys(plain).sort()).toEqual(['code', 'name']);
    expect(inspect(plain)).not.toMatch(/undefined/);
    const sys = new MprunError('ERR_MPRUN_SYSTEM', 'open failed', { errno: 'ENOENT', syscall: 'open', rank: 3 });
    expect([sys.errno, sys.syscall, sys.rank]).toEqual(['ENOENT', 'open', 3]);
    expect(inspect(sys)).toMatch(/errno: 'ENOENT'/);
  });
});
