/**
 * A cluster on this machine, for tests and the cross-node benchmarks: N
 * nodes, each a network namespace joined to a bridge by a veth pair, with its own address, its own hostname
 * (a UTS namespace), a private /dev/shm (a mount namespace with a tmpfs) and
 * its own processes (a PID namespace),
 * and sshd running inside it, so that `ssh nodeI ...` lands in that node.
 * Everything it creates (namespaces, links, daemons, keys) it removes on stop.
 * Needs root, iproute2, unshare and openssh-server.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ClusterNode {
  name: string;
  address: string;
  netns: string;
}

export interface Cluster {
  nodes: ClusterNode[];
  /** The host's address on the cluster network (where mprun's controller listens). */
  hostAddress: string;
  /** ssh client configuration naming every node (pass with ssh -F). */
  sshConfig: string;
  /** Open MPI style hostfile: `nodeI slots=S`. */
  hostfile: string;
  dir: string;
  stop(): void;
}

/** Whether `tool` (a name in PATH, or a path) can be run. */
export function hasTool(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

/** Why the cluster cannot be built here, or null when it can. */
export function clusterUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, veth, sshd)';
  for (const tool of ['ip', 'unshare', 'ssh', 'ssh-keygen', '/usr/sbin/sshd']) {
    if (!hasTool(tool)) return `needs ${tool} (Debian: iproute2, util-linux, openssh-client, openssh-server)`;
  }
  return null;
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function quiet(cmd: string, args: string[]): void {
  spawnSync(cmd, args, { stdio: 'ignore' });
}

let clusters = 0;

/**
 * The stops of the clusters this process still runs. Its daemons are detached
 * (their own process groups), so a bench or script killed by a signal, or one
 * that calls process.exit(), left sshd in its namespaces, the namespaces and
 * the cluster's folder behind: they are stopped on the way out too.
 */
const live = new Set<() => void>();
const EXIT_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function stopLive(): void {
  for (const stop of [...live]) stop();
}

function onExitSignal(signal: NodeJS.Signals): void {
  stopLive();
  // Then as if we had not been listening: the signal's own action, unless someone else handles it.
  for (const s of EXIT_SIGNALS) process.off(s, onExitSignal);
  process.off('exit', stopLive);
  process.kill(process.pid, signal);
}

function track(stop: () => void): void {
  if (live.size === 0) {
    for (const s of EXIT_SIGNALS) process.on(s, onExitSignal);
    process.on('exit', stopLive);
  }
  live.add(stop);
}

function untrack(stop: () => void): void {
  live.delete(stop);
  if (live.size === 0) {
    for (const s of EXIT_SIGNALS) process.off(s, onExitSignal);
    process.off('exit', stopLive);
  }
}

export async function startCluster(count: number, slots = 2): Promise<Cluster> {
  const why = clusterUnavailable();
  if (why !== null) throw new Error(`cannot build the test cluster: ${why}`);
  const serial = clusters++;
  const tag = `m${process.pid % 100000}${String.fromCharCode(97 + (serial % 26))}`;
  const net = `10.${200 + (process.pid % 50)}.${(((process.pid >> 6) % 25) * 10 + serial) % 250}`;
  const bridge = `${tag}br`;
  const dir = mkdtempSync(join(tmpdir(), 'mprun-cluster-'));
  const nodes: ClusterNode[] = [];
  const daemons: ChildProcess[] = [];
  const stop = (): void => {
    untrack(stop);
    for (const d of daemons) {
      try {
        process.kill(-d.pid!, 'SIGKILL');
      } catch {
        d.kill('SIGKILL');
      }
    }
    for (const n of nodes) quiet('ip', ['netns', 'del', n.netns]);
    quiet('ip', ['link', 'del', bridge]);
    rmSync(dir, { recursive: true, force: true });
  };
  track(stop);
  try {
    run('ip', ['link', 'add', bridge, 'type', 'bridge']);
    run('ip', ['addr', 'add', `${net}.254/24`, 'dev', bridge]);
    run('ip', ['link', 'set', bridge, 'up']);
    // Keys: one host key for every sshd, one client key for root.
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')]);
    execFileSync('cp', [join(dir, 'client_key.pub'), join(dir, 'authorized_keys')]);
    chmodSync(dir, 0o700);
    if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const sshConfig: string[] = [];
    for (let i = 1; i <= count; i++) {
      const name = `node${i}`;
      const netns = `${tag}n${i}`;
      const address = `${net}.${i}`;
      nodes.push({ name, address, netns });
      run('ip', ['netns', 'add', netns]);
      run('ip', ['link', 'add', `${tag}v${i}`, 'type', 'veth', 'peer', 'name', `${tag}p${i}`]);
      run('ip', ['link', 'set', `${tag}v${i}`, 'master', bridge]);
      run('ip', ['link', 'set', `${tag}v${i}`, 'up']);
      run('ip', ['link', 'set', `${tag}p${i}`, 'netns', netns]);
      run('ip', ['-n', netns, 'link', 'set', `${tag}p${i}`, 'name', 'eth0']);
      run('ip', ['-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      run('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
      run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
      const cfg = join(dir, `sshd_${name}`);
      writeFileSync(
        cfg,
        [
          `ListenAddress ${address}`,
          'Port 22',
          `HostKey ${join(dir, 'host_key')}`,
          `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
          'PermitRootLogin prohibit-password',
          'PasswordAuthentication no',
          'KbdInteractiveAuthentication no',
          'UsePAM no',
          'StrictModes no',
          'PidFile none',
          'LogLevel ERROR',
          // A clean node: bash sources ~/.bashrc for an ssh command only at
          // shell level 1 (SSH_SOURCE_BASHRC), and this machine's .bashrc runs
          // `pyenv rehash`, which races between two nodes sharing /root and
          // prints to the job's stderr. SHLVL=1 makes the command's shell
          // level 2, as on a node whose rc files print nothing.
          'SetEnv SHLVL=1',
          '',
        ].join('\n'),
      );
      // The node's own hostname, /dev/shm and processes (its own PID namespace
      // and /proc): sshd and every session inherit them. Killing the node's
      // first process ends every process of the node.
      const d = spawn('ip', ['netns', 'exec', netns, 'unshare', '--uts', '--mount', '--pid', '--fork', '--mount-proc', '--propagation', 'private', '--', 'sh', '-c', `hostname ${name} && mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec /usr/sbin/sshd -D -e -f ${cfg}`], {
        stdio: 'ignore',
        detached: true,
      });
      daemons.push(d);
      sshConfig.push(`Host ${name}`, `  HostName ${address}`, '  User root', `  IdentityFile ${join(dir, 'client_key')}`, '  StrictHostKeyChecking no', '  UserKnownHostsFile /dev/null', '  LogLevel ERROR', '');
    }
    const sshConfigPath = join(dir, 'ssh_config');
    writeFileSync(sshConfigPath, sshConfig.join('\n'));
    const hostfile = join(dir, 'hostfile');
    writeFileSync(hostfile, nodes.map((n) => `${n.name} slots=${slots}`).join('\n') + '\n');
    // Wait until every sshd answers (30 s: one CI run saw a node's sshd take over 10 s on the
    // 2 busy cores).
    for (const n of nodes) {
      const until = Date.now() + 30_000;
      for (;;) {
        const r = spawnSync('ssh', ['-F', sshConfigPath, '-T', '-oBatchMode=yes', '-oConnectTimeout=2', n.name, 'true'], { stdio: 'ignore' });
        if (r.status === 0) break;
        if (Date.now() > until) throw new Error(`sshd on ${n.name} (${n.address}) did not come up`);
        await new Promise((r2) => setTimeout(r2, 100));
      }
    }
    return { nodes, hostAddress: `${net}.254`, sshConfig: sshConfigPath, hostfile, dir, stop };
  } catch (e) {
    stop();
    throw e;
  }
}

/** Runs `cmd` on a node of the cluster over its ssh; returns its trimmed stdout. */
export function onNode(cluster: Cluster, node: string, cmd: string): string {
  return spawnSync('ssh', ['-F', cluster.sshConfig, '-T', '-oBatchMode=yes', node, cmd], { encoding: 'utf8' }).stdout.trim();
}

/**
 * What mprun left on any node: its agents and ranks still running, its files in /dev/shm.
 * Ranks of a .ts app run as the job's bundle (<app>.<hash>.rank.mjs), not through
 * rank-main.js: both are looked for ([.] keeps pgrep from matching its own shell).
 */
export function clusterLeftovers(cluster: Cluster): string[] {
  return cluster.nodes.flatMap((n) => onNode(cluster, n.name, "pgrep -af '[m]prun.js --agent|[r]ank-main.js|[.]rank[.][mc]js' || true; ls /dev/shm | grep -i mprun || true").split('\n').filter((l) => l.trim() !== ''));
}
