/**
 * mprun/rpmem, librpmem's API against a real mprun-rpmemd: started per pool by
 * the client through RPMEM_SSH (here a stand-in for ssh that runs the command
 * on this machine; the cluster tests use real OpenSSH), pools in pool set
 * files, data checked in the part files themselves, lanes, librpmem's errno
 * names, sticky errors, a daemon killed, a full disk, and intruders on the
 * lane port.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync, readdirSync, truncateSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { create, emptyAttr, open, remove, crc32c, type PoolAttr, type RpmemPool } from '../../transports/rpmem/index.js';
import { RpmemFrame, RPMEM_PROTOCOL } from '../../transports/rpmem/protocol.js';
import { layoutOf, readDescriptor, readSlot, writeSlot } from '../../transports/rpmem/store.js';
import { isMprunError } from '../../core/errors.js';
import { native } from '../../native/index.js';
import { eventually, onSmallTmpfs, root } from '../helpers.js';

const SSH = join(root, 'test', 'fixtures', 'local-ssh.sh');
const DAEMON = `${process.execPath} ${join(root, 'bin', 'mprun-rpmemd.js')}`;
const MiB = 1024 * 1024;

function attr(sig = 'TESTPOOL', major = 1): PoolAttr {
  const a = emptyAttr();
  a.signature = sig;
  a.major = major;
  a.uuid.fill(7);
  a.userFlags[3] = 9;
  return a;
}

async function rejects(p: Promise<unknown>, errno: string): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(isMprunError(e, 'ERR_MPRUN_RPMEM')).toBe(true);
    expect((e as { errno?: string }).errno).toBe(errno);
    return (e as Error).message;
  }
  throw new Error(`expected ${errno}, but it succeeded`);
}

function fileBytes(path: string, at: number, n: number): Buffer {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(n);
  readSync(fd, b, 0, n, at);
  closeSync(fd);
  return b;
}

describe('mprun/rpmem (librpmem API, local target over RPMEM_SSH)', () => {
  let dir: string;
  const saved = { ssh: process.env.RPMEM_SSH, cmd: process.env.RPMEM_CMD };
  const opts = (): { poolsetDir: string } => ({ poolsetDir: dir });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'rpmem-test-'));
    process.env.RPMEM_SSH = SSH;
    process.env.RPMEM_CMD = `${DAEMON} --log-file ${join(dir, 'daemon.log')}`;
  });
  afterAll(() => {
    process.env.RPMEM_SSH = saved.ssh;
    if (saved.cmd === undefined) delete process.env.RPMEM_CMD;
    else process.env.RPMEM_CMD = saved.cmd;
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a two-part pool, persists across the part boundary, and the bytes are in the part files', async () => {
    writeFileSync(join(dir, 'two.set'), `PMEMPOOLSET\n4M ${join(dir, 'two.part0')}\n2M two.part1\n`);
    const pool = await create('node1', 'two.set', 6 * MiB - 4096, { nlanes: 2, attr: attr(), ...opts() });
    expect(pool.size).toBe(6 * MiB - 4096);
    expect(pool.nlanes).toBe(2);
    expect(pool.dataStart).toBe(4096);
    expect(['msync', 'pmem']).toContain(pool.persistMethod);
    // Both parts exist, 0600, with their space allocated.
    for (const p of ['two.part0', 'two.part1']) expect(readFileSync(join(dir, p)).byteLength).toBe(p.endsWith('0') ? 4 * MiB : 2 * MiB);
    expect(execFileSync('stat', ['-c', '%a', join(dir, 'two.part0')], { encoding: 'utf8' }).trim()).toBe('600');
    // A range that straddles parts: the end of part 0's data, then part 1 after its own header.
    const at = 4 * MiB - 1000;
    for (let i = 0; i < 3000; i++) pool.data[at + i] = (i * 7) & 0xff;
    await pool.persist(at, 3000, { lane: 1 });
    expect(fileBytes(join(dir, 'two.part0'), at, 1000)).toEqual(Buffer.from(pool.data.subarray(at, at + 1000)));
    // Part 1 has its own 4 KiB header: pool offset 4 MiB is byte 4096 of part 1.
    expect(fileBytes(join(dir, 'two.part1'), 4096, 2000)).toEqual(Buffer.from(pool.data.subarray(at + 1000, at + 3000)));
    const back = new Uint8Array(3000);
    await pool.read(back, at, { lane: 0 });
    expect(Buffer.from(back)).toEqual(Buffer.from(pool.data.subarray(at, at + 3000)));
    await pool.close();

    // Open returns the attributes; setAttr overwrites them (checksummed header).
    const again = await open('node1', 'two.set', opts());
    expect(again.attr?.signature).toBe('TESTPOOL');
    expect(again.attr?.uuid).toEqual(new Uint8Array(16).fill(7));
    expect(again.attr?.userFlags[3]).toBe(9);
    expect(again.size).toBe(6 * MiB - 4096);
    await again.setAttr(attr('RENAMED', 5));
    await again.close();
    const third = await open('node1', 'two.set', opts());
    expect(third.attr?.signature).toBe('RENAMED');
    expect(third.attr?.major).toBe(5);
    await third.close();
    await remove('node1', 'two.set', { ...opts(), poolSet: true });
    expect(readdirSync(dir).filter((f) => f.startsWith('two'))).toEqual([]);
  });

  it('persists through libpmem where it is installed, and through msync without it', async () => {
    const info = native().pmemInfo();
    if (!info.libpmem) console.log(`libpmem path not exercised here: ${info.reason} (CI installs libpmem-dev)`);
    if (process.env.CI !== undefined) expect(info.libpmem).toBe(true);
    for (const env of ['', 'env MPRUN_NO_LIBPMEM=1 ']) {
      process.env.RPMEM_CMD = `${env}${DAEMON} --log-file ${join(dir, 'daemon.log')}`;
      try {
        writeFileSync(join(dir, 'path.set'), 'PMEMPOOLSET\n2M path.part0\n');
        const pool = await create('node1', 'path.set', 2 * MiB, { attr: attr(), ...opts() });
        // No real pmem on this machine: either way the target must msync (pmem_msync or msync).
        expect(pool.persistMethod).toBe('msync');
        expect(pool.mapping).toBe(env === '' && info.libpmem ? 'libpmem' : 'mmap');
        pool.data.fill(0x77, 4096, 65536);
        await pool.persist(4096, 65536 - 4096);
        expect(fileBytes(join(dir, 'path.part0'), 60000, 4)).toEqual(Buffer.alloc(4, 0x77));
        await pool.close();
        await remove('node1', 'path.set', { ...opts(), poolSet: true });
      } finally {
        process.env.RPMEM_CMD = `${DAEMON} --log-file ${join(dir, 'daemon.log')}`;
      }
    }
  });

  it('writes large ranges over several lanes at once, and flush + drain makes them persistent', async () => {
    writeFileSync(join(dir, 'big.set'), 'PMEMPOOLSET\nOPTION SINGLEHDR\n64M big.part0\n');
    const pool = await create('node1', 'big.set', 64 * MiB, { nlanes: 4, attr: attr(), ...opts() });
    for (let i = 4096; i < pool.size; i += 4096) pool.data[i] = (i >> 12) & 0xff;
    const quarter = (pool.size - 4096) / 4;
    await Promise.all([0, 1, 2, 3].map((lane) => pool.persist(4096 + lane * quarter, quarter, { lane })));
    const f = join(dir, 'big.part0');
    for (const at of [4096, 8 * MiB, 33 * MiB + 4096, 64 * MiB - 4096]) expect(fileBytes(f, at, 1)[0]).toBe((at >> 12) & 0xff);
    pool.data.fill(0x5a, MiB, 3 * MiB);
    await pool.flush(MiB, 2 * MiB, { lane: 2 });
    await pool.drain({ lane: 2 });
    expect(fileBytes(f, 2 * MiB, 16)).toEqual(Buffer.alloc(16, 0x5a));
    // Deep persist and relaxed flags are accepted.
    await pool.persist(4096, 4096, { deep: true, relaxed: true });
    await pool.close();
    await remove('node1', 'big.set', opts());
  });

  it('a checkpoint slot goes to each replica at its own offsets: pools of different sizes both restore it', async () => {
    writeFileSync(join(dir, 'rs-small.set'), 'PMEMPOOLSET\n2M rs-small.part0\n');
    writeFileSync(join(dir, 'rs-big.set'), 'PMEMPOOLSET\n8M rs-big.part0\n');
    const small = await create('node1', 'rs-small.set', 2 * MiB, { nlanes: 2, attr: attr(), ...opts() });
    const big = await create('node1', 'rs-big.set', 8 * MiB, { nlanes: 2, attr: attr(), ...opts() });
    const state = new Uint32Array(64 * 1024).map((_, i) => Math.imul(i, 2654435761) >>> 0);
    const layout = layoutOf(new Map([['state', state]]));
    const bytes = new Uint8Array(state.buffer);
    for (const epoch of [1, 2]) {
      bytes[0] = epoch;
      const written = await writeSlot([small, big], { epoch, rank: 0, nranks: 1, layout, views: [bytes] });
      for (const w of written) expect(w).not.toBeInstanceOf(Error);
    }
    // Both epochs from both pools (epoch 1 in slot 1: with the first pool's offsets on the
    // bigger one, it lay inside that pool's slot 0, where epoch 2 then overwrote it).
    for (const [name, pool] of [['small', small], ['big', big]] as const) {
      for (const epoch of [1, 2]) {
        const info = await readDescriptor(pool, epoch % 2, name);
        expect(info.epoch).toBe(epoch);
        const into = new Uint8Array(bytes.byteLength);
        await readSlot(pool, info, [into], `${name} epoch ${epoch}`);
        expect(into[0]).toBe(epoch);
        expect(Buffer.from(into.subarray(1)).equals(Buffer.from(bytes.subarray(1)))).toBe(true);
      }
    }
    await small.close();
    await big.close();
    await remove('node1', 'rs-small.set', opts());
    await remove('node1', 'rs-big.set', opts());
  });

  it("reports librpmem's errno names: EEXIST, ENOENT, EBUSY, EINVAL, EFBIG", async () => {
    writeFileSync(join(dir, 'e.set'), 'PMEMPOOLSET\n2M e.part0\n');
    writeFileSync(join(dir, 'nohdr.set'), 'PMEMPOOLSET\nOPTION NOHDRS\n2M nohdr.part0\n');
    await rejects(open('node1', 'e.set', opts()), 'ENOENT');
    await rejects(open('node1', 'no-such.set', opts()), 'ENOENT');
    await rejects(create('node1', 'e.set', 4 * MiB, { attr: attr(), ...opts() }), 'EFBIG');
    await rejects(create('node1', '../escape.set', 2 * MiB, { attr: attr(), ...opts() }), 'EINVAL');
    await rejects(create('node1', 'e.set', 2 * MiB, { attr: null, ...opts() }), 'EINVAL');
    await rejects(create('node1', 'nohdr.set', 2 * MiB, { attr: attr(), ...opts() }), 'EINVAL');
    const pool = await create('node1', 'e.set', 2 * MiB, { attr: attr(), ...opts() });
    await rejects(create('node1', 'e.set', 2 * MiB, { attr: attr(), ...opts() }), 'EEXIST');
    expect(await rejects(open('node1', 'e.set', opts()), 'EBUSY')).toMatch(/already in use/);
    // Arguments are checked before a byte moves: the header is not the caller's.
    await rejects(pool.persist(0, 16), 'EINVAL');
    await rejects(pool.persist(2 * MiB - 8, 16), 'EINVAL');
    await rejects(pool.persist(4096, 16, { lane: 1 }), 'EINVAL');
    // Argument errors are not sticky.
    await pool.persist(4096, 16);
    await pool.close();
    // NOHDRS: no attributes, and offset 0 is the caller's.
    const raw = await create('node1', 'nohdr.set', 2 * MiB, { attr: null, ...opts() });
    expect(raw.dataStart).toBe(0);
    raw.data[0] = 42;
    await raw.persist(0, 1);
    await raw.close();
    const rawAgain = await open('node1', 'nohdr.set', opts());
    expect(rawAgain.attr).toBeNull();
    const one = new Uint8Array(1);
    await rawAgain.read(one, 0);
    expect(one[0]).toBe(42);
    await rawAgain.close();
    await remove('node1', 'nohdr.set', { ...opts(), poolSet: true });
    await remove('node1', 'e.set', { ...opts(), poolSet: true });
  });

  it('recovers a damaged header from its backup (and the reverse); both damaged: refused naming the file, remove needs force', async () => {
    writeFileSync(join(dir, 'bad.set'), 'PMEMPOOLSET\n2M bad.part0\n');
    const part = join(dir, 'bad.part0');
    const backup = `${part}.hdr`;
    const pool = await create('node1', 'bad.set', 2 * MiB, { attr: attr(), ...opts() });
    await pool.close();
    // The backup: the header's 4096 bytes in a file beside the part.
    const header = fileBytes(part, 0, 4096);
    expect(readFileSync(backup)).toEqual(header);
    const flip = (file: string, at: number): void => {
      const b = fileBytes(file, at, 1);
      b[0] ^= 0x10;
      execFileSync('dd', [`of=${file}`, 'bs=1', `seek=${at}`, 'conv=notrunc', 'status=none'], { input: b });
    };
    // The header damaged: opened from the backup, the header rewritten, the client told.
    flip(part, 9);
    const recovered = await open('node1', 'bad.set', opts());
    expect(recovered.attr?.signature).toBe('TESTPOOL');
    expect(recovered.repairs).toEqual([`the header of ${part} was damaged (it fails its checksum); recovered from its backup ${backup}`]);
    await recovered.close();
    expect(fileBytes(part, 0, 4096)).toEqual(header);
    // The backup damaged: rewritten from the header.
    flip(backup, 9);
    const again = await open('node1', 'bad.set', opts());
    expect(again.repairs).toEqual([`the header backup ${backup} was damaged (it fails its checksum); rewritten from the header of ${part}`]);
    await again.close();
    expect(readFileSync(backup)).toEqual(header);
    // No backup (a pool made before backups existed): made at open, not damage.
    rmSync(backup);
    const old = await open('node1', 'bad.set', opts());
    expect(old.repairs).toEqual([]);
    await old.close();
    expect(readFileSync(backup)).toEqual(header);
    // Both damaged: refused, naming the part and its backup, the errno named once.
    flip(part, 9);
    flip(backup, 30);
    const why = await rejects(open('node1', 'bad.set', opts()), 'EINVAL');
    expect(why).toBe(`${part}: the pool header fails its checksum, and its backup ${backup} fails its checksum: the pool cannot be opened (EINVAL)`);
    await rejects(remove('node1', 'bad.set', opts()), 'EINVAL');
    await remove('node1', 'bad.set', { ...opts(), force: true, poolSet: true });
    expect(existsSync(part)).toBe(false);
    expect(existsSync(backup)).toBe(false);
  });

  it("refuses a pool whose header says more bytes than its set's parts now hold", async () => {
    writeFileSync(join(dir, 'cut.set'), 'PMEMPOOLSET\n4M cut.part0\n');
    const pool = await create('node1', 'cut.set', 4 * MiB, { attr: attr(), ...opts() });
    const size = pool.descriptor().size;
    await pool.close();
    // The set edited and its part cut to match: both agree, the header does not.
    writeFileSync(join(dir, 'cut.set'), 'PMEMPOOLSET\n2M cut.part0\n');
    truncateSync(join(dir, 'cut.part0'), 2 * MiB);
    // Its header's backup gone: an open would make it again, a refused one writes nothing.
    rmSync(join(dir, 'cut.part0.hdr'));
    const why = await rejects(open('node1', 'cut.set', opts()), 'EINVAL');
    expect(why).toBe(`${join(dir, 'cut.set')}: the pool header says ${size} bytes, the set's parts hold ${2 * MiB} (EINVAL)`);
    expect(existsSync(join(dir, 'cut.part0.hdr'))).toBe(false);
  });

  it('a failed persist is never acknowledged and poisons the pool: every later call reports it (sticky)', async () => {
    process.env.RPMEM_CMD = `env MPRUN_RPMEMD_FAIL_PERSIST=3 ${DAEMON} --log-file ${join(dir, 'daemon.log')}`;
    try {
      writeFileSync(join(dir, 'sick.set'), 'PMEMPOOLSET\n2M sick.part0\n');
      const pool = await create('node1', 'sick.set', 2 * MiB, { attr: attr(), ...opts() });
      await pool.persist(4096, 100); // persist 1 (create's header persists are the daemon's own)
      await pool.persist(8192, 100); // 2
      await rejects(pool.persist(12288, 100), 'EIO'); // 3: fails
      expect(pool.error?.errno).toBe('EIO');
      await rejects(pool.persist(4096, 100), 'EIO');
      await rejects(pool.read(new Uint8Array(8), 4096), 'EIO');
      await rejects(pool.setAttr(attr()), 'EIO');
      await rejects(pool.drain(), 'EIO');
      await pool.close();
      expect(readFileSync(join(dir, 'daemon.log'), 'utf8')).toMatch(/failed \(EIO\); the pool is poisoned/);
      expect(execFileSync('stat', ['-c', '%a', join(dir, 'daemon.log')], { encoding: 'utf8' }).trim()).toBe('600');
    } finally {
      process.env.RPMEM_CMD = `${DAEMON} --log-file ${join(dir, 'daemon.log')}`;
    }
    await remove('node1', 'sick.set', { ...opts(), poolSet: true });
  });

  it('a killed daemon makes the pool fail with ECONNRESET, stickily', async () => {
    const sub = join(dir, 'killme');
    mkdirSync(sub);
    writeFileSync(join(sub, 'k.set'), 'PMEMPOOLSET\n2M k.part0\n');
    const pool = await create('node1', 'k.set', 2 * MiB, { attr: attr(), poolsetDir: sub });
    await pool.persist(4096, 100);
    spawnSync('pkill', ['-9', '-f', '--', `--poolset-dir '?${sub}`]);
    await eventually(() => pool.error !== null, 3000);
    await rejects(pool.persist(4096, 100), 'ECONNRESET');
    await rejects(pool.read(new Uint8Array(4), 4096), 'ECONNRESET');
    await pool.close().catch(() => undefined);
  });

  it('a full disk fails at create (space is allocated then), with ENOSPC and nothing left behind', async (ctx) => {
    const small = join(dir, 'small');
    await onSmallTmpfs(ctx, small, '3m', async () => {
      writeFileSync(join(small, 'full.set'), 'PMEMPOOLSET\n4M full.part0\n');
      expect(await rejects(create('node1', 'full.set', 4 * MiB, { attr: attr(), poolsetDir: small }), 'ENOSPC')).toMatch(/posix_fallocate/);
      expect(existsSync(join(small, 'full.part0'))).toBe(false);
      writeFileSync(join(small, 'fits.set'), 'PMEMPOOLSET\n2M fits.part0\n');
      const pool = await create('node1', 'fits.set', 2 * MiB, { attr: attr(), poolsetDir: small });
      pool.data.fill(1, 4096, 2 * MiB);
      await pool.persist(4096, 2 * MiB - 4096);
      await pool.close();
    });
  });

  it('closes and logs malformed or unauthenticated lane connections, and keeps serving', async () => {
    writeFileSync(join(dir, 'guard.set'), 'PMEMPOOLSET\n2M guard.part0\n');
    const pool: RpmemPool = await create('node1', 'guard.set', 2 * MiB, { attr: attr(), ...opts() });
    const d = pool.descriptor();
    const auth = (secret: string): Buffer => RPMEM_PROTOCOL.frame(RpmemFrame.AUTH, { id: 1 }, Buffer.from(secret));
    const lane = RPMEM_PROTOCOL.frame(RpmemFrame.LANE, { id: 2, target: d.pool, arg: 0 });
    const bad = Buffer.from(RPMEM_PROTOCOL.frame(RpmemFrame.AUTH, { id: 1 }, Buffer.from(d.secret)));
    bad[4] = 99; // protocol version 99
    const outside = Buffer.alloc(64, 0xee);
    // An offset of 2^64 - 8 (past what JavaScript frames carry): offset + length wraps to 56.
    const wrapping = (type: number, payload: Buffer, length = 0): Buffer => {
      const f = Buffer.from(RPMEM_PROTOCOL.frame(type, { offset: 4096, arg: crc32c(payload), ...(length > 0 ? { length } : {}) }, payload));
      f.writeUInt32LE(0xfffffff8, 16);
      f.writeUInt32LE(0xffffffff, 20);
      return f;
    };
    const cases: Array<[string, Buffer[], RegExp]> = [
      ['garbage', [Buffer.from('GET / HTTP/1.1\r\n\r\n'.repeat(3))], /frame|version|bounds/],
      ['wrong secret', [auth('x'.repeat(d.secret.length))], /wrong secret/],
      ['version 99', [bad], /version 99/],
      // Refused on its header: nothing bigger than a secret is read before the secret is checked.
      ['oversized auth', [RPMEM_PROTOCOL.frame(RpmemFrame.AUTH, { id: 1 }, Buffer.alloc(2048))], /AUTH of 2048 bytes \(at most 1024\)/],
      ['write before auth', [RPMEM_PROTOCOL.frame(RpmemFrame.WRITE, { offset: 4096, arg: crc32c(outside) }, outside)], /WRITE before AUTH/],
      ['lane of a pool not open', [auth(d.secret), RPMEM_PROTOCOL.frame(RpmemFrame.LANE, { id: 2, target: 999, arg: 0 })], /not open/],
      ['write into the header', [auth(d.secret), lane, RPMEM_PROTOCOL.frame(RpmemFrame.WRITE, { offset: 0, arg: crc32c(outside) }, outside)], /outside the pool's data area/],
      ['write past the end', [auth(d.secret), lane, RPMEM_PROTOCOL.frame(RpmemFrame.WRITE, { offset: 2 * MiB - 8, arg: crc32c(outside) }, outside)], /outside the pool's data area/],
      ['write at an offset that wraps', [auth(d.secret), lane, wrapping(RpmemFrame.WRITE, outside)], /WRITE of 64 bytes at 18446744073709551608 is outside the pool's data area/],
      ['read at an offset that wraps', [auth(d.secret), lane, wrapping(RpmemFrame.READ, Buffer.alloc(0), 64)], /READ of 64 bytes at 18446744073709551608 is outside the pool's data area/],
    ];
    for (const [name, frames, logged] of cases) {
      const closed = await new Promise<boolean>((resolve) => {
        const s = connect({ host: d.address, port: d.port }, () => frames.forEach((f) => s.write(f)));
        s.on('error', () => undefined);
        s.on('data', () => undefined);
        s.on('close', () => resolve(true));
        setTimeout(() => resolve(false), 5000);
      });
      expect(closed, name).toBe(true);
      expect(readFileSync(join(dir, 'daemon.log'), 'utf8'), name).toMatch(logged);
    }
    // Nothing moved: the header still verifies and the pool still serves.
    pool.data.fill(3, 4096, 8192);
    await pool.persist(4096, 4096);
    await pool.close();
    const again = await open('node1', 'guard.set', opts());
    const back = new Uint8Array(4096);
    await again.read(back, 4096);
    expect(back.every((b) => b === 3)).toBe(true);
    // A chunk whose CRC32C does not match is refused (EBADMSG), never applied.
    const d2 = again.descriptor();
    const replies = await new Promise<Buffer>((resolve) => {
      let got = Buffer.alloc(0);
      const s = connect({ host: d2.address, port: d2.port }, () => {
        s.write(auth(d2.secret));
        s.write(RPMEM_PROTOCOL.frame(RpmemFrame.LANE, { id: 2, target: d2.pool, arg: 0 }));
        s.write(RPMEM_PROTOCOL.frame(RpmemFrame.WRITE, { id: 3, offset: 4096, aux: 1, arg: crc32c(outside) ^ 1 }, outside));
      });
      s.on('data', (b: Buffer) => {
        got = Buffer.concat([got, b]);
        if (got.byteLength >= 96) {
          s.destroy();
          resolve(got);
        }
      });
    });
    expect(replies.readInt32LE(64 + 28)).toBe(74); // EBADMSG
    await again.read(back, 4096);
    expect(back.every((b) => b === 3)).toBe(true);
    await again.close();
    await remove('node1', 'guard.set', { ...opts(), poolSet: true });
  });
});
