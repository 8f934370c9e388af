/**
 * The XPMEM API, the same suite over every backend this machine has
 * (kernel XPMEM, shared-memory segments, CMA). An unavailable backend skips
 * with its reason printed.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as xpmem from '../../transports/xpmem/index.js';
import { MprunError } from '../../core/errors.js';
import { root } from '../helpers.js';

const owner = join(root, 'test', 'fixtures', 'xpmem-owner.mjs');

function xerr(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MprunError);
    expect((e as MprunError).code).toBe('ERR_MPRUN_XPMEM');
    return (e as MprunError).errno ?? 'none';
  }
  return 'no error';
}

class Owner {
  readonly child: ChildProcessWithoutNullStreams;
  readonly lines: Interface;
  readonly #queue: string[] = [];
  readonly #waiters: Array<(l: string) => void> = [];
  constructor(env: Record<string, string>, args: string[] = [], uid?: number) {
    this.child = spawn(process.execPath, [owner, ...args], { env: { ...process.env, ...env }, ...(uid !== undefined ? { uid, gid: uid } : {}) });
    this.lines = createInterface({ input: this.child.stdout });
    this.lines.on('line', (l) => {
      const w = this.#waiters.shift();
      if (w) w(l);
      else this.#queue.push(l);
    });
  }
  next(): Promise<string> {
    const l = this.#queue.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => this.#waiters.push(r));
  }
  async ask(cmd: string): Promise<string> {
    this.child.stdin.write(`${cmd}\n`);
    return this.next();
  }
  async segid(): Promise<{ segid: bigint; backend: string }> {
    const m = /^segid (\d+) backend (\w+)$/.exec(await this.next());
    if (m === null) throw new Error('owner did not report a segid');
    return { segid: BigInt(m[1]!), backend: m[2]! };
  }
  exit(): Promise<void> {
    return new Promise((r) => {
      if (this.child.exitCode !== null) return r();
      this.child.once('exit', () => r());
      this.child.stdin.write('exit\n');
    });
  }
}

const statuses = xpmem.backends();

describe.each(statuses.map((s) => [s.name, s] as const))('xpmem over the %s backend', (name, status) => {
  if (!status.available) {
    it.skip(`skipped: ${status.reason}`, () => undefined);
    console.log(`xpmem conformance: the ${name} backend is skipped on this machine: ${status.reason}`);
    return;
  }
  const env = { MPRUN_XPMEM_BACKEND: name };
  const owners: Owner[] = [];
  const start = (args: string[] = []): Owner => {
    const o = new Owner(env, args);
    owners.push(o);
    return o;
  };
  // The segment made by the owner: in shared memory, except for the CMA
  // backend, which serves memory that is not in a shared segment.
  const ownerArgs = name === 'cma' ? ['plain'] : [];

  beforeAll(() => xpmem.useBackend(name));
  afterAll(() => xpmem.useBackend(null));
  afterEach(async () => {
    await Promise.all(owners.splice(0).map((o) => o.exit()));
  });

  it('reports its version and name', () => {
    expect(xpmem.backend.name).toBe(name);
    expect(xpmem.version()).toBeGreaterThan(0);
  });

  it('make rejects empty memory and bad permits with EINVAL', () => {
    expect(xerr(() => xpmem.make(new Uint8Array(0)))).toBe('EINVAL');
    expect(xerr(() => xpmem.make(new Uint8Array(xpmem.allocShared(4096)), 0o1000))).toBe('EINVAL');
  });

  it('get rejects bad flags (EINVAL) and unknown segments (ENOENT)', async () => {
    const o = start(ownerArgs);
    const { segid } = await o.segid();
    expect(xerr(() => xpmem.get(segid, 7))).toBe('EINVAL');
    expect(xerr(() => xpmem.get((1n << 62n) | (5n << 32n) | BigInt(o.child.pid!)))).toBe('ENOENT');
  });

  it('attaches another process\'s memory; reads and writes reach the owner', async () => {
    const o = start(ownerArgs);
    const { segid, backend } = await o.segid();
    expect(backend).toBe(name);
    const apid = xpmem.get(segid, xpmem.XPMEM_RDWR);
    const att = xpmem.attach(apid, 4096, 4096);
    expect(att.length).toBe(4096);
    expect(att.mapped).toBe(status.canMap);
    const probe = new Uint8Array(4);
    att.read(10, probe);
    expect(Array.from(probe)).toEqual([10, 11, 12, 13]);
    att.write(100, Uint8Array.of(201));
    expect(await o.ask('byte 4196')).toBe('byte 201');
    if (att.mapped) {
      // Plain loads and stores, no copies.
      expect(att.bytes![0]).toBe(0); // 4096 & 0xff
      att.bytes![1] = 77;
      expect(await o.ask('byte 4097')).toBe('byte 77');
      const words = att.view(Uint32Array, 8, 2);
      words[0] = 0xdeadbeef;
      expect(await o.ask('byte 4104')).toBe(`byte ${0xef}`);
    } else {
      expect(att.bytes).toBeNull();
      expect(xerr(() => att.view(Uint8Array))).toBe('EINVAL');
    }
    xpmem.detach(att);
    expect(att.detached).toBe(true);
    xpmem.release(apid);
  });

  it('attach past the end of the segment fails with EINVAL; a released apid with ENOENT', async () => {
    const o = start(ownerArgs);
    const { segid } = await o.segid();
    const apid = xpmem.get(segid, 'rdwr');
    expect(xerr(() => xpmem.attach(apid, 4096, 8192))).toBe('EINVAL');
    const att = xpmem.attach(apid, 0, 8192);
    expect(xerr(() => att.read(8190, new Uint8Array(4)))).toBe('EINVAL');
    xpmem.release(apid);
    expect(xerr(() => xpmem.attach(apid, 0, 4096))).toBe('ENOENT');
    expect(xerr(() => xpmem.release(apid))).toBe('ENOENT');
  });

  it('a removed segment cannot be got (ENOENT); only its owner may remove it (EACCES)', async () => {
    const o = start(ownerArgs);
    const { segid } = await o.segid();
    expect(xerr(() => xpmem.remove(segid))).toBe('EACCES');
    expect(await o.ask('remove')).toBe('removed');
    expect(xerr(() => xpmem.get(segid))).toBe('ENOENT');
  });

  it('a read-only access cannot write', async () => {
    const o = start(ownerArgs);
    const { segid } = await o.segid();
    const att = xpmem.attach(xpmem.get(segid, xpmem.XPMEM_RDONLY), 0, 4096);
    expect(xerr(() => att.write(0, Uint8Array.of(1)))).toBe('EACCES');
  });

  it('the owner exiting never crashes the attacher: it notices and detaches', async () => {
    const o = start(ownerArgs);
    const { segid } = await o.segid();
    const pid = o.child.pid!;
    const att = xpmem.attach(xpmem.get(segid), 0, 8192);
    await o.exit();
    expect(xpmem.ownerAlive(pid)).toBe(false);
    expect(xerr(() => xpmem.get(segid))).toBe('ENOENT');
    if (att.mapped) {
      // The memory stays valid (no SIGBUS, unlike kernel XPMEM): read it, then let go.
      expect(att.bytes![7]).toBe(7);
    } else {
      expect(() => att.read(0, new Uint8Array(1))).toThrow(MprunError);
    }
    att.detach();
    if (status.canMap) expect(att.bytes!.length).toBe(0);
  });

  it('in-process segments round-trip (make, get, attach in the owner itself)', () => {
    if (name === 'cma') return; // CMA segments of this process cannot be attached by it
    const mem = new Uint8Array(xpmem.allocShared(8192));
    mem[5000] = 42;
    const segid = xpmem.make(mem);
    const att = xpmem.attach(xpmem.get(segid), 4096, 4096);
    expect(att.bytes![5000 - 4096]).toBe(42);
    att.bytes![0] = 9;
    expect(mem[4096]).toBe(9);
    att.detach();
    xpmem.remove(segid);
  });

  it('checks permissions like the kernel: another user gets EACCES', async () => {
    if (process.getuid?.() !== 0) {
      console.log('xpmem permission test skipped: needs root to start a process as another user');
      return;
    }
    const o = start(ownerArgs);
    const { segid } = await o.segid();
    const other = spawn(process.execPath, ['--input-type=module', '-e', `
      import * as x from ${JSON.stringify(join(root, 'dist/transports/xpmem/index.js'))};
      try { x.get(${segid}n); console.log('no error'); } catch (e) { console.log(e.errno); }`], { uid: 65534, gid: 65534, env: { ...process.env, ...env } });
    let out = '';
    other.stdout.on('data', (d: Buffer) => (out += d.toString()));
    other.stderr.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => other.on('close', r));
    expect(out.trim()).toBe('EACCES');
  });
});

describe('xpmem backend selection', () => {
  it('lists every backend with a reason, best first', () => {
    expect(statuses.map((s) => s.name)).toEqual(['kernel', 'shm', 'cma']);
    for (const s of statuses) expect(s.reason.length).toBeGreaterThan(0);
  });

  it('memory outside a shared segment is served by CMA (copies only)', async () => {
    const o = new Owner({}, ['plain']);
    const { segid } = await o.segid();
    const att = xpmem.attach(xpmem.get(segid), 0, 8192);
    expect(att.backend).toBe(xpmem.backend.name === 'kernel' ? 'kernel' : 'cma');
    const b = new Uint8Array(1);
    att.read(300, b);
    expect(b[0]).toBe(300 & 0xff);
    await o.exit();
  });

  it('refuses a forced backend name it does not know', () => {
    expect(xerr(() => xpmem.useBackend('infiniband' as 'shm'))).toBe('EINVAL');
  });
});
