import { describe, expect, it } from 'vitest';
import { maxMappingBytes, native } from './index.js';

describe('shared mappings', () => {
  it('refuses a mapping longer than Node.js can hold in one buffer, with an error (issue 13: it aborted with a double free)', () => {
    const n = native();
    expect(n.maxMapping()).toBe(maxMappingBytes);
    const size = maxMappingBytes + 1024 ** 3; // 5 GiB in Node 20; memfd pages are never touched
    const fd = n.memfdCreate('mprun-test-big', size);
    try {
      expect(() => n.mapFd(fd, 0, size, fd)).toThrow(expect.objectContaining({ code: 'ERR_MPRUN_ARG', message: expect.stringMatching(/at most \d+ bytes/) }));
      // The addon is intact after the refusal: a mapping of the same fd still works.
      const b = n.mapFd(fd, 0, 4096, fd);
      new Uint8Array(b)[0] = 7;
      expect(n.locate(new Uint8Array(b))).toEqual([fd, 0, 4096]);
      expect(n.release(b)).toBe(true);
    } finally {
      n.closeFd(fd);
    }
  });
});
