/** The on-target formats: pool set files, the pool header, and the checkpoint store's records. */
import { describe, expect, it } from 'vitest';
import { crc32c } from './crc.js';
import { backupPathOf, decodeHeader, emptyAttr, encodeHeader, recoverHeader } from './header.js';
import { capacityOf, extentsOf, formatPoolSet, parsePoolSet, parseSize, splitRange } from './poolset.js';
import { decodeDescriptor, decodeRecord, decodeSuperblock, encodeDescriptor, encodeRecord, encodeSuperblock, poolSizeFor, slotCapacity, VerifyError } from './store.js';

const MiB = 1024 * 1024;

describe('rpmem formats', () => {
  it('computes CRC32C (Castagnoli), chained', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(0))).toBe(0);
    const a = Buffer.from('hello, ');
    const b = Buffer.from('persistent world');
    expect(crc32c(b, crc32c(a))).toBe(crc32c(Buffer.concat([a, b])));
  });

  it('agrees with a bitwise CRC32C at every length and alignment (the interleaved streams join right)', () => {
    const reference = (bytes: Uint8Array): number => {
      let c = 0xffffffff;
      for (const x of bytes) {
        c ^= x;
        for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      }
      return ~c >>> 0;
    };
    let seed = 12345;
    const data = new Uint8Array(3 * 8192 * 2 + 3 * 256 + 77);
    for (let i = 0; i < data.length; i++) data[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    for (const n of [0, 1, 7, 8, 255, 767, 768, 769, 24575, 24576, 24577, data.length - 3]) {
      for (const off of [0, 3]) expect(crc32c(data.subarray(off, off + n)), `${n} bytes at ${off}`).toBe(reference(data.subarray(off, off + n)));
    }
  });

  it('parses PMDK pool set files and maps the pool onto its parts', () => {
    expect(parseSize('2M')).toBe(2 * MiB);
    expect(parseSize('1GiB')).toBe(1024 * MiB);
    expect(parseSize('3KB')).toBe(3000);
    expect(parseSize('12x')).toBeNull();
    const all = parsePoolSet('PMEMPOOLSET\n# comment\n4M /p/a.part0\n2M b.part1   # relative\n', '/sets/x.set');
    expect(all).toEqual({ headers: 'all', parts: [{ path: '/p/a.part0', size: 4 * MiB }, { path: '/sets/b.part1', size: 2 * MiB }] });
    // Usable = parts - 4096 per header; the pool space keeps part 0's header at 0.
    expect(capacityOf(all)).toBe(6 * MiB - 4096);
    expect(extentsOf(all)).toEqual([
      { poolOffset: 0, part: 0, partOffset: 0, length: 4 * MiB },
      { poolOffset: 4 * MiB, part: 1, partOffset: 4096, length: 2 * MiB - 4096 },
    ]);
    expect(splitRange(extentsOf(all), 4 * MiB - 10, 20)).toEqual([
      { poolOffset: 4 * MiB - 10, part: 0, partOffset: 4 * MiB - 10, length: 10 },
      { poolOffset: 4 * MiB, part: 1, partOffset: 4096, length: 10 },
    ]);
    const single = parsePoolSet('PMEMPOOLSET\nOPTION SINGLEHDR\n2M /a\n2M /b\n', '/s.set');
    expect(capacityOf(single)).toBe(4 * MiB);
    expect(parsePoolSet(formatPoolSet(single), '/s.set')).toEqual(single);
    expect(capacityOf(parsePoolSet('PMEMPOOLSET\nOPTION NOHDRS\n2M /a\n', '/s.set'))).toBe(2 * MiB);
  });

  it('rejects bad pool sets with the line that is wrong', () => {
    expect(() => parsePoolSet('2M /a\n', '/s.set')).toThrow(/s.set:1: a pool set file starts with PMEMPOOLSET/);
    expect(() => parsePoolSet('PMEMPOOLSET\n1M /a\n', '/s.set')).toThrow(/smaller than the minimum part/);
    expect(() => parsePoolSet('PMEMPOOLSET\nOPTION SINGLEHDR\nOPTION NOHDRS\n2M /a\n', '/s.set')).toThrow(/mutually exclusive/);
    expect(() => parsePoolSet('PMEMPOOLSET\n2M /a\nREPLICA host x.set\n', '/s.set')).toThrow(/cannot have replicas/);
    expect(() => parsePoolSet('PMEMPOOLSET\n', '/s.set')).toThrow(/no parts/);
    try {
      parsePoolSet('PMEMPOOLSET\nsize /a\n', '/s.set');
    } catch (e) {
      expect((e as { errno?: string }).errno).toBe('EINVAL');
    }
  });

  it('keeps the pool header checksummed: a flipped bit is detected', () => {
    const attr = emptyAttr();
    attr.signature = 'PMEMOBJ';
    attr.major = 6;
    attr.poolsetUuid.fill(1);
    attr.userFlags[15] = 0xff;
    const hdr = new Uint8Array(4096);
    encodeHeader({ attr, poolSize: 123 * 4096, part: 0, parts: 2 }, hdr);
    expect(decodeHeader(hdr, 'h')).toEqual({ attr, poolSize: 123 * 4096, part: 0, parts: 2 });
    hdr[30] ^= 1;
    expect(() => decodeHeader(hdr, 'h')).toThrow(/fails its checksum/);
    expect(() => decodeHeader(new Uint8Array(4096), 'h')).toThrow(/no pool header/);
  });

  it('keeps a backup of every header: a damaged copy is recovered from the other, both damaged name the file', () => {
    const attr = emptyAttr();
    attr.signature = 'MPRUNCKP';
    attr.userFlags[4] = 2;
    const make = (part: number, major = 1): Uint8Array => {
      const h = new Uint8Array(4096);
      encodeHeader({ attr: { ...attr, major }, poolSize: 12288, part, parts: 1 }, h);
      return h;
    };
    const flipped = (h: Uint8Array, at: number): Uint8Array => {
      const c = h.slice();
      c[at]! ^= 0x04;
      return c;
    };
    const file = '/pools/J/job.part0';
    const good = make(0);
    expect(backupPathOf(file)).toBe('/pools/J/job.part0.hdr');
    expect(recoverHeader(good, good.slice(), 0, file)).toEqual({ header: decodeHeader(good, file), fix: { kind: 'none' } });
    // The byte 20 (ro_compat features) of the header: the backup's header, and the header is to be rewritten.
    const r = recoverHeader(flipped(good, 20), good.slice(), 0, file);
    expect(r.header).toEqual(decodeHeader(good, file));
    expect(r.fix).toEqual({ kind: 'primary', damage: `the header of ${file} was damaged (it fails its checksum)` });
    // A header overwritten with zeros (no magic), or its checksum hit.
    expect(recoverHeader(new Uint8Array(4096), good, 0, file).fix).toEqual({ kind: 'primary', damage: `the header of ${file} was damaged (it is not a pool header)` });
    expect(recoverHeader(flipped(good, 4093), good, 0, file).fix.kind).toBe('primary');
    // The reverse: a damaged backup (or one cut short) is rewritten from the header.
    expect(recoverHeader(good, flipped(good, 20), 0, file).fix).toEqual({ kind: 'backup', damage: `the header backup ${file}.hdr was damaged (it fails its checksum)` });
    expect(recoverHeader(good, good.subarray(0, 100), 0, file).fix).toEqual({ kind: 'backup', damage: `the header backup ${file}.hdr was damaged (it is 100 bytes, not 4096)` });
    // A backup of another part is no backup of this one.
    expect(recoverHeader(good, make(1), 0, file).fix).toEqual({ kind: 'backup', damage: `the header backup ${file}.hdr was damaged (it belongs to part 1, not 0)` });
    // No backup yet (a pool made before backups): made from the header, not damage.
    expect(recoverHeader(good, null, 0, file).fix).toEqual({ kind: 'new-backup' });
    // Both verify but differ (setAttr stopped between the header and its backup): the header is the newer.
    const newer = make(0, 2);
    const stale = recoverHeader(newer, good, 0, file);
    expect(stale.header.attr.major).toBe(2);
    expect(stale.fix).toEqual({ kind: 'stale-backup' });
    // Both damaged, or damaged and none: EINVAL naming the part and its backup.
    expect(() => recoverHeader(flipped(good, 20), flipped(good, 21), 0, file)).toThrow(`${file}: the pool header fails its checksum, and its backup ${file}.hdr fails its checksum: the pool cannot be opened (EINVAL)`);
    expect(() => recoverHeader(flipped(good, 20), null, 0, file)).toThrow(`${file}: the pool header fails its checksum, and its backup ${file}.hdr is missing: the pool cannot be opened (EINVAL)`);
    expect(() => recoverHeader(new Uint8Array(4096), null, 0, file)).toThrow(/the pool header is missing \(not created by an rpmem target, or overwritten\), and its backup .* is missing/);
  });

  it('round-trips superblocks, slot descriptors and commit records, and rejects damaged ones', () => {
    expect(decodeSuperblock(encodeSuperblock({ epoch: 7, slot: 1, generation: 2 }))).toEqual({ epoch: 7, slot: 1, generation: 2 });
    const desc = { epoch: 9, slot: 1, rank: 3, nranks: 8, totalBytes: 3 * MiB + 5, nChunks: 4, tableCrc: 0xdeadbeef, layout: [{ name: 'grid', type: 'Float64Array', length: 10, offset: 0, bytes: 80 }] };
    const bytes = encodeDescriptor(desc);
    expect(decodeDescriptor(bytes, 'd')).toEqual({ ...desc, digest: crc32c(bytes) });
    const rec = { epoch: 4, nranks: 3, totalBytes: 99, time: 1.7e12, digests: [1, 0xffffffff, 3], generations: [1, 1, 2] };
    const rb = encodeRecord(rec);
    expect(decodeRecord(rb, 'r')).toEqual(rec);
    rb[20] ^= 0x80;
    expect(() => decodeRecord(rb, 'r')).toThrow(VerifyError);
    expect(() => decodeRecord(new Uint8Array(64), 'r')).toThrow(/no commit record/);
  });

  it('sizes pools so that one slot holds the state', () => {
    for (const total of [0, 1, 4096, MiB, 64 * MiB + 3, 1000 * MiB]) expect(slotCapacity(poolSizeFor(total))).toBeGreaterThanOrEqual(total);
    expect(poolSizeFor(64 * MiB)).toBeLessThan(2 * 64 * MiB + MiB);
  });
});
