/**
 * Reaching an rpmem target's daemon for a control session, one of two ways:
 *   - a string, `[user@]host[:port]`: the daemon is started over ssh like
 *     rpmemd (`$RPMEM_SSH -T -oBatchMode=yes host $RPMEM_CMD`), one daemon per
 *     pool, control on its stdin/stdout; the client's first frame gives it a
 *     fresh secret, which every lane then proves;
 *   - a DaemonEndpoint: a daemon mprun started for the job, reached by a TCP
 *     control session that proves the job's secret.
 */
import type { ChildProcess } from 'node:child_process';
// node:child_process is imported where a daemon is started: every rank's bundle holds this
// module, and most ranks start none.
import { once } from 'node:events';
import { join } from 'node:path';
import { rpmemError } from '../../core/errors.js';
import { randomHex } from '../../core/random.js';
import { shellQuote, shellWords } from '../../core/shell.js';
import { packageRoot } from '../../native/index.js';
import { dial, RpmemConnection } from './connection.js';
import { errnoName, RpmemFrame } from './protocol.js';

/** A daemon mprun started: where its lanes listen, and the secret they prove. */
export interface DaemonEndpoint {
  address: string;
  port: number;
  secret: string;
  /** For messages (the target as the user named it). */
  label?: string;
}

export type Target = string | DaemonEndpoint;

export interface LaunchOptions {
  /** The daemon's pool set directory (`--poolset-dir`); default: its configuration, else $HOME. */
  poolsetDir?: string;
}

/** A control session with a daemon, where its lanes listen, and how to end it. */
export interface Control {
  ch: RpmemConnection;
  address: string;
  port: number;
  secret: string;
  label: string;
  end(): void;
  /** Whether the connection keeps the process alive (Node's ref/unref). */
  keepAlive(on: boolean): void;
}

/** The daemon command (RPMEM_CMD), this installation's by default. */
export function daemonCommand(poolsetDir?: string): string {
  const base = process.env.RPMEM_CMD ?? `${process.execPath} ${join(packageRoot, 'bin', 'mprun-rpmemd.js')}`;
  return poolsetDir === undefined ? base : `${base} --poolset-dir ${shellQuote(poolsetDir)}`;
}

/**
 * The command that runs `remoteCmd` on `target` (`[user@]host[:port]`) as
 * librpmem does: `ssh -T -oBatchMode=yes [-p port] host cmd`, with `ssh`
 * ($RPMEM_SSH by default) in place of plain ssh.
 */
export function sshArgv(target: string, remoteCmd: string, ssh: string[] = shellWords(process.env.RPMEM_SSH ?? 'ssh')): string[] {
  const m = /^(.*?)(?::(\d+))?$/.exec(target)!;
  // ServerAlive: a target host that vanishes ends the session (and the daemon's control channel) in a minute.
  return [...ssh, '-T', '-oBatchMode=yes', '-oServerAliveInterval=15', '-oServerAliveCountMax=4', ...(m[2] !== undefined ? ['-p', m[2], m[1]!] : [m[1]!]), remoteCmd];
}

/**
 * Starts a daemon: over ssh for a target string (RPMEM_SSH replaces ssh), or as a
 * local child when `argv` is given. Reads its status word, sends the secret,
 * and returns the control session.
 */
export async function spawnDaemon(target: string, opts: LaunchOptions & { argv?: string[]; secret?: string; onStderr?: (d: Buffer) => void } = {}): Promise<Control & { child: ChildProcess }> {
  const argv = opts.argv ?? sshArgv(target, daemonCommand(opts.poolsetDir));
  const { spawn } = await import('node:child_process');
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const label = `rpmem target ${target}`;
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (opts.onStderr !== undefined) opts.onStderr(d);
    else stderr = (stderr + d.toString()).slice(-4000);
  });
  child.stdin!.on('error', () => undefined);
  const ch = new RpmemConnection(
    (b) => child.stdin!.write(b),
    () => (child.stdin!.writableNeedDrain ? once(child.stdin!, 'drain').then(() => undefined) : Promise.resolve()),
  );
  const started = new Promise<void>((resolve, reject) => {
    let head = Buffer.alloc(0);
    let statusRead = false;
    child.stdout!.on('data', (d: Buffer) => {
      if (statusRead) return ch.feed(d);
      head = Buffer.concat([head, d]);
      if (head.byteLength < 4) return;
      statusRead = true;
      const status = head.readInt32BE(0);
      if (status !== 0) reject(rpmemError(errnoName(status), `${label} could not start${stderr ? `: ${stderr.trim()}` : ''}`));
      else resolve();
      if (head.byteLength > 4) ch.feed(head.subarray(4));
    });
    child.on('error', (e) => reject(rpmemError('ENOENT', `cannot run ${argv[0]}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      const why = `${label} ended (${signal ?? `exit code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`;
      reject(rpmemError('ECONNRESET', why));
      ch.fail(rpmemError('ECONNRESET', why));
    });
  });
  await started;
  // The secret travels on the ssh channel; the lanes prove it to the daemon.
  const secret = opts.secret ?? randomHex(32);
  const reply = await ch.request(RpmemFrame.AUTH, {}, `starting ${label}`, Buffer.from(secret));
  const where = JSON.parse(Buffer.from(reply).toString('utf8')) as { address: string; port: number };
  const streams = [child.stdin, child.stdout, child.stderr] as Array<{ ref?(): void; unref?(): void } | null>;
  const keepAlive = (on: boolean): void => {
    if (on) child.ref();
    else child.unref();
    for (const s of streams) (on ? s?.ref : s?.unref)?.call(s);
  };
  return { child, ch, secret, label, address: where.address, port: where.port, end: () => child.stdin!.end(), keepAlive };
}

/** A TCP control session to a daemon mprun started. */
export async function session(ep: DaemonEndpoint): Promise<Control> {
  const label = `rpmem target ${ep.label ?? `${ep.address}:${ep.port}`}`;
  const { sock, ch } = await dial(ep.address, ep.port, ep.secret, label);
  return { ch, address: ep.address, port: ep.port, secret: ep.secret, label, end: () => sock.end(), keepAlive: (on) => void (on ? sock.ref() : sock.unref()) };
}

/** A control session with `target`'s daemon: started over ssh for a string, a TCP session for an endpoint. */
export function control(target: Target, opts: LaunchOptions): Promise<Control> {
  return typeof target === 'string' ? spawnDaemon(target, opts) : session(target);
}

/**
 * rpmem_remove on a target string, as librpmem does it: `ssh ... rpmemd
 * --remove <set> [--force] [--pool-set]`, whose exit status is the errno.
 */
export async function removeOverSsh(target: string, poolSet: string, opts: LaunchOptions & { force?: boolean; poolSet?: boolean }): Promise<void> {
  const cmd = `${daemonCommand(opts.poolsetDir)} --remove ${shellQuote(poolSet)}${opts.force === true ? ' --force' : ''}${opts.poolSet === true ? ' --pool-set' : ''}`;
  const argv = sshArgv(target, cmd);
  const { spawn } = await import('node:child_process');
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code === 0) return;
  const name = code !== null ? errnoName(code) : 'EREMOTEIO';
  throw rpmemError(name, stderr.trim().replace(/^mprun-rpmemd: /, '').replace(/ \([A-Z]+\)$/, '') || `removing ${poolSet} on ${target} failed`);
}
