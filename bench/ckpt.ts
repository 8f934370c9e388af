/**
 * Checkpoint and restore bandwidth against the limits measured in the same run.
 *
 *   npm run ckpt-bench [-- --sizes 64,256,1024 --ranks 2 --rounds 3 --dir DIR]
 *
 * For each size of protected state (MiB, the whole job's), R rounds of:
 *   - TCP: a plain stream of that many bytes from this process to a sink
 *     process on the target's address (127.0.0.1: the local target), which
 *     reads the way the lanes do;
 *   - disk: write() of that many bytes in 1 MiB blocks into a new file in the
 *     target's pool directory, then fdatasync();
 *   - mprun: `mprun -n RANKS --job ... bench/ckpt-app.ts` (sync checkpoints,
 *     async ones, restores; see that file).
 * Prints medians and the ratios the issue sets: checkpoint bandwidth against
 * the smaller limit (target 0.8), the async stall against the synchronous
 * checkpoint time (target 0.2 at most); restore bandwidth against the same
 * smaller limit.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../native/index.js';
import { median } from './compare.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1]!;
};
const SIZES = arg('sizes', '64,256,1024').split(',').map(Number);
const RANKS = Number(arg('ranks', '2'));
const ROUNDS = Number(arg('rounds', '3'));
const DIR = arg('dir', join(homedir(), '.mprun', 'bench-checkpoints'));
const MiB = 1024 * 1024;

/**
 * Bytes/s of one TCP stream from this process into a sink process on the
 * target's address. The sink reads as our lanes do (4 MiB reads into one
 * reused buffer: Node's default 64 KiB reads would understate the limit).
 */
async function tcpLimit(bytes: number): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  const port = (server.address() as { port: number }).port;
  const sink = spawn(process.execPath, [
    '-e',
    `let n=0;const c=require('net').connect({host:'127.0.0.1',port:${port},onread:{buffer:Buffer.allocUnsafe(4<<20),callback:(k)=>{n+=k;if(n>=${bytes})c.end('k');return true}}})`,
  ]);
  const conn = await new Promise<Socket>((ok) => server.once('connection', ok));
  const block = Buffer.alloc(MiB, 1);
  const t0 = performance.now();
  await new Promise<void>((done) => {
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes) {
        sent += block.byteLength;
        if (!conn.write(block)) return void conn.once('drain', pump);
      }
    };
    conn.on('data', () => done());
    pump();
  });
  const s = (performance.now() - t0) / 1000;
  conn.destroy();
  server.close();
  sink.kill();
  return bytes / s;
}

/** Bytes/s of write() + fdatasync() of a new file in the pool directory. */
function diskLimit(bytes: number): number {
  mkdirSync(DIR, { recursive: true });
  const f = join(DIR, 'write-fdatasync.tmp');
  const block = Buffer.alloc(MiB, 2);
  const t0 = performance.now();
  const fd = openSync(f, 'w', 0o600);
  for (let at = 0; at < bytes; at += MiB) writeSync(fd, block);
  fdatasyncSync(fd);
  closeSync(fd);
  const s = (performance.now() - t0) / 1000;
  rmSync(f);
  return bytes / s;
}

interface AppResult {
  bytes: number;
  sync: number[];
  stall: number[];
  asyncTotal: number[];
  restore: number[];
}

function runApp(mib: number): AppResult {
  const mprun = join(packageRoot, 'bin', 'mprun.js');
  const job = `bench-${mib}`;
  const target = `localhost:${DIR}`;
  const r = spawnSync(process.execPath, [mprun, '-n', String(RANKS), '--ckpt-mkdir', '--job', job, '--ckpt-target', target, join(packageRoot, 'bench', 'ckpt-app.ts'), '--mib', String(mib), '--rounds', '3'], {
    encoding: 'utf8',
    maxBuffer: 16 * MiB,
    timeout: 600_000,
  });
  spawnSync(process.execPath, [mprun, 'checkpoints', 'remove', '--job', job, '--ckpt-target', target], { encoding: 'utf8' });
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('{'));
  if (r.status !== 0 || line === undefined) throw new Error(`the checkpoint job failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(line) as AppResult;
}

const gbps = (bps: number): string => `${(bps / 1e9).toFixed(2)} GB/s`;

async function main(): Promise<void> {
  console.log(`# checkpoint/restore, ${RANKS} ranks, target localhost:${DIR}, medians of ${ROUNDS} rounds (each job: 3 of each)`);
  console.log('| state | checkpoint | restore | TCP limit | write+fdatasync limit | checkpoint / min(limits) | restore / min(limits) | async stall | stall / sync checkpoint |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const mib of SIZES) {
    const bytes = mib * MiB;
    const tcp: number[] = [];
    const disk: number[] = [];
    const sync: number[] = [];
    const restore: number[] = [];
    const stall: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      tcp.push(await tcpLimit(bytes));
      disk.push(diskLimit(bytes));
      const a = runApp(mib);
      sync.push(...a.sync);
      restore.push(...a.restore);
      stall.push(...a.stall);
    }
    const ckptBw = bytes / median(sync);
    const limit = Math.min(median(tcp), median(disk));
    console.log(
      `| ${mib} MiB | ${gbps(ckptBw)} (${median(sync).toFixed(3)} s) | ${gbps(bytes / median(restore))} | ${gbps(median(tcp))} | ${gbps(median(disk))} | ${(ckptBw / limit).toFixed(2)} | ${(bytes / median(restore) / limit).toFixed(2)} | ${(median(stall) * 1000).toFixed(1)} ms | ${(median(stall) / median(sync)).toFixed(3)} |`,
    );
  }
}

await main();
