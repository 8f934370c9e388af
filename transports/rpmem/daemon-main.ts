/**
 * `mprun-rpmemd`: the rpmem target daemon's command line, as rpmemd(1):
 *
 *   mprun-rpmemd [--poolset-dir DIR] [--config FILE] [--listen ADDR] [--log-file FILE] [--log-level err|info]
 *   mprun-rpmemd --remove SET [--force] [--pool-set]
 *
 * Serving mode speaks the control protocol on stdin/stdout: first a big-endian
 * int32 status word (0, or the errno of a failed start), then frames; the
 * client's first frame is AUTH with the secret its lanes will prove. The end of
 * stdin (the ssh channel closing) closes every pool and ends the daemon.
 * Configuration: /etc/rpmemd/rpmemd.conf, then ~/.rpmemd.conf, then --config;
 * keys poolset-dir (default: $HOME), log-file and log-level (err, the default, or info). The lanes listen on the
 * server address of SSH_CONNECTION, or --listen, or 127.0.0.1.
 *
 * Remove mode deletes a pool's parts (and with --pool-set its set file); the
 * exit status is 0 or the errno number of the failure, with the reason on stderr.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { FrameParser } from '../../core/frames.js';
import { RpmemDaemon } from './daemon.js';
import { errnoNumber, RpmemFrame, RPMEM_PROTOCOL } from './protocol.js';

/** rpmemd's configuration files: `key = value` lines; later files override earlier ones. */
export function readConfig(files: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of files) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const m = /^\s*([a-z-]+)\s*=\s*(.*?)\s*$/.exec(line.replace(/#.*$/, ''));
      if (m !== null) out[m[1]!] = m[2]!;
    }
  }
  return out;
}

/** A logger to stderr or to a log file, each line stamped. */
export function daemonLogger(file: string | undefined): (message: string) => void {
  return (message) => {
    const line = `mprun-rpmemd[${process.pid}]: ${message}\n`;
    // 0600 as every file of ours: it names pools, paths and clients.
    if (file !== undefined) appendFileSync(file, `${new Date().toISOString()} ${line}`, { mode: 0o600 });
    else process.stderr.write(line);
  };
}

function usage(message: string): number {
  process.stderr.write(`mprun-rpmemd: ${message}\nusage: mprun-rpmemd [--poolset-dir DIR] [--config FILE] [--listen ADDR] [--log-file FILE] [--log-level err|info]\n       mprun-rpmemd --remove SET [--force] [--pool-set]\n`);
  return 2;
}

export async function main(argv: string[]): Promise<number> {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--force' || a === '--pool-set') flags.set(a, true);
    else if (['--poolset-dir', '--config', '--listen', '--log-file', '--log-level', '--remove'].includes(a)) {
      const v = argv[++i];
      if (v === undefined) return usage(`${a} needs a value`);
      flags.set(a, v);
    } else return usage(`unknown argument ${a}`);
  }
  const files = ['/etc/rpmemd/rpmemd.conf', join(homedir(), '.rpmemd.conf')];
  if (typeof flags.get('--config') === 'string') files.push(flags.get('--config') as string);
  const conf = readConfig(files);
  const dir = resolve((flags.get('--poolset-dir') as string | undefined) ?? conf['poolset-dir'] ?? homedir());
  const log = daemonLogger((flags.get('--log-file') as string | undefined) ?? conf['log-file']);
  const sshServer = process.env.SSH_CONNECTION?.split(' ')[2];
  const listen = (flags.get('--listen') as string | undefined) ?? sshServer ?? '127.0.0.1';
  const level = (flags.get('--log-level') as string | undefined) ?? conf['log-level'] ?? 'err';
  const daemon = new RpmemDaemon({ poolsetDir: dir, listen, log, ...(level === 'info' || level === 'debug' ? { info: log } : {}) });

  const removing = flags.get('--remove');
  if (typeof removing === 'string') {
    try {
      daemon.pools.remove({ poolSet: removing, force: flags.has('--force'), poolSetFile: flags.has('--pool-set') });
      return 0;
    } catch (e) {
      const errno = (e as { errno?: string }).errno ?? 'EIO';
      process.stderr.write(`mprun-rpmemd: ${(e as Error).message} (${errno})\n`);
      return errnoNumber(errno, 'EPERM'); // an errno this system lacks: exit status 1
    }
  }

  const word = Buffer.alloc(4);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code ?? 'EIO';
    log(`cannot use the pool set directory ${dir}: ${(e as Error).message}`);
    word.writeInt32BE(errnoNumber(errno));
    process.stdout.write(word);
    return 1;
  }
  process.stdout.write(word);

  const owner = {};
  const reply = (b: Buffer): void => void process.stdout.write(b);
  let started = false;
  const ended = new Promise<void>((done) => {
    const parser = new FrameParser(
      {
        begin: () => null,
        end: (h, payload) => {
          if (!started) {
            if (h.type !== RpmemFrame.AUTH || payload.byteLength < 16) throw new Error('the first frame on stdin must be AUTH with a secret of at least 16 bytes');
            started = true;
            daemon
              .start(Buffer.from(payload))
              .then((where) => reply(RPMEM_PROTOCOL.frame(RpmemFrame.REPLY, { id: h.id }, Buffer.from(JSON.stringify(where)))))
              .catch((e: unknown) => {
                log(`cannot listen on ${listen}: ${(e as Error).message}`);
                done();
              });
            return;
          }
          daemon.control(owner, reply, h, payload);
        },
      },
      RPMEM_PROTOCOL,
    );
    process.stdin.on('data', (d: Buffer) => {
      try {
        parser.push(d);
      } catch (e) {
        // The control channel is the client's own ssh session: a bad frame there ends the session.
        log(`control channel: ${(e as Error).message}; closing`);
        done();
      }
    });
    process.stdin.on('end', () => done());
    process.stdin.on('error', () => done());
  });
  await ended;
  daemon.stop();
  return 0;
}
