/**
 * How mprun reaches other nodes and how they reach it back: the command that
 * starts an agent (ssh with its options, or --launch-agent), a node's address
 * as that command sees it, and our address on the route to it.
 */
import { spawnSync } from 'node:child_process';
import { basename } from 'node:path';
import { shellWords } from '../core/shell.js';

export interface LaunchCommand {
  cmd: string[];
  /** Whether it is ssh (then ssh's own options and aliases apply). */
  ssh: boolean;
}

/** The launch agent command and, for ssh, the options every call gets. */
export function launchCommand(launchAgent: string | null): LaunchCommand {
  const cmd = shellWords(launchAgent ?? 'ssh');
  const ssh = basename(cmd[0] ?? '') === 'ssh';
  if (ssh) cmd.push('-T', '-oBatchMode=yes', ...shellWords(process.env.MPRUN_SSH_ARGS ?? ''));
  return { cmd, ssh };
}

/** The address of `host` as the launch agent will reach it (ssh -G knows ssh's aliases, scontrol Slurm's). */
export function resolveAddress(host: string, launch: LaunchCommand, slurm: boolean): string {
  let name = host.replace(/^.*@/, '');
  if (slurm) {
    const s = spawnSync('scontrol', ['show', 'node', host], { encoding: 'utf8' });
    const m = /NodeAddr=(\S+)/.exec(s.stdout ?? '');
    if (m !== null) name = m[1]!;
  } else if (launch.ssh) {
    const g = spawnSync(launch.cmd[0]!, ['-G', ...launch.cmd.slice(1).filter((a) => a !== '-T'), host], { encoding: 'utf8' });
    const m = /^hostname (\S+)$/m.exec(g.stdout ?? '');
    if (m !== null) name = m[1]!;
  }
  if (/^[0-9.]+$/.test(name) || name.includes(':')) return name;
  const r = spawnSync('getent', ['ahostsv4', name], { encoding: 'utf8' });
  const ip = /^(\S+)/.exec(r.stdout ?? '')?.[1];
  if (ip === undefined) throw new Error(`cannot resolve ${host} (${name}); give --controller-address`);
  return ip;
}

/** Our address on the route to `ip` (ip route get): the one the nodes can reach back. */
export function routeSource(ip: string): string {
  const r = spawnSync('ip', ['route', 'get', ip], { encoding: 'utf8' });
  const src = / src (\S+)/.exec(r.stdout ?? '')?.[1];
  if (src === undefined) throw new Error(`no route to ${ip}; give --controller-address`);
  return src;
}
