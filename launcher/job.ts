/**
 * The job controller: wire-up service, one agent per node (in mprun itself
 * for a local job; `mprun --agent` over ssh on other nodes), output
 * forwarding, and exit semantics:
 * - the job's exit code is that of the lowest rank that failed on its own;
 * - a rank that dies (signal, non-zero exit, or exit without finalize) or a
 *   node that is lost aborts the job at once, with a message naming the rank
 *   (pid, cause) or the node;
 * - SIGINT/SIGTERM reach every rank, then SIGKILL after a grace period;
 * - on every path the job's private directories are removed, and ranks die
 *   with their agent, agents with mprun, so nothing is left behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { constants as osConstants } from 'node:os';
import { packageRoot } from '../native/index.js';
import { readConfig } from '../runtime/config.js';
import { HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS, NodeAgent, type AgentEvent, type LaunchSpec } from './agent.js';
import { compileApp, needsCompile } from './compile.js';
import { makeJobDir } from './tmpdirs.js';
import { Controller } from './controller.js';
import { isLocalHost, placeRanks, type HostSlots, type NodePlan } from './hosts.js';
import { LineSink } from './stdio.js';
import { HangReports, hangReportMs } from './hangs.js';
import { shellQuote, shellWords } from '../core/shell.js';
import type { Frame } from '../core/wire.js';
import { ABORTED_EXIT_CODE, TIMEOUT_EXIT_CODE } from './exit-codes.js';
import { claimJob, committedState, defaultTarget, resumeLine, startTargets } from './ckpt.js';
import type { CheckpointTarget } from './ckpt.js';

export interface JobOptions {
  np: number;
  app: string;
  args: string[];
  /** Extra environment for every rank (-x). */
  env: Record<string, string>;
  tagOutput: boolean;
  timeoutSeconds: number | null;
  /** --report-hangs: print where the ranks wait once all have waited this long. */
  reportHangsSeconds: number | null;
  /** 'core': each rank to one core (the default when ranks <= cores); 'none': let the kernel place them. */
  bindTo: 'core' | 'none' | 'auto';
  /** Nodes to run on (--host, --hostfile); null: this machine only. */
  hosts: HostSlots[] | null;
  mapBy: 'slot' | 'node';
  oversubscribe: boolean;
  /** The command that starts agents on other nodes (default: ssh). */
  launchAgent: string | null;
  /** The address mprun listens on for nodes (default: the one on the route to them). */
  controllerAddress: string | null;
  /** The hosts are a Slurm allocation's: srun starts the agents. */
  slurm: boolean;
  /** The checkpoint job's name (--job): protect/restore/checkpoint work only with one. */
  job: string | null;
  /** Where checkpoints go (--ckpt-target, repeatable: replicas); empty: the local default. */
  ckptTargets: CheckpointTarget[];
}

export { TIMEOUT_EXIT_CODE } from './exit-codes.js';

interface RankState {
  rank: number;
  node: number;
  pid: number;
  exited: boolean;
  connected: boolean;
  finalized: boolean;
  /** Exit code this rank is blamed for, when it failed on its own. */
  failure: number | null;
}

/** A node's agent, local or remote, as the controller drives it. */
interface NodeLink {
  send(f: Frame): void;
  /** Ranks of this node still running. */
  live: number;
  connected: boolean;
  /** When its agent was last heard from (remote only). */
  lastHeard: number;
}

function log(message: string): void {
  process.stderr.write(`mprun: ${message}\n`);
}

function signalNumber(sig: string): number {
  return (osConstants.signals as Record<string, number>)[sig] ?? 15;
}

export { shellWords } from '../core/shell.js';

/** The launch agent command and, for ssh, the options every call gets. */
function launchCommand(opts: JobOptions): { cmd: string[]; ssh: boolean } {
  const cmd = shellWords(opts.launchAgent ?? 'ssh');
  const ssh = basename(cmd[0] ?? '') === 'ssh';
  if (ssh) cmd.push('-T', '-oBatchMode=yes', ...shellWords(process.env.MPRUN_SSH_ARGS ?? ''));
  return { cmd, ssh };
}

/** The address of `host` as the launch agent will reach it (ssh -G knows ssh's aliases, scontrol Slurm's). */
function resolveAddress(host: string, launch: { cmd: string[]; ssh: boolean }, slurm: boolean): string {
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
function routeSource(ip: string): string {
  const r = spawnSync('ip', ['route', 'get', ip], { encoding: 'utf8' });
  const src = / src (\S+)/.exec(r.stdout ?? '')?.[1];
  if (src === undefined) throw new Error(`no route to ${ip}; give --controller-address`);
  return src;
}

export async function runJob(opts: JobOptions): Promise<number> {
  const jobId = `${process.pid}.${randomBytes(3).toString('hex')}`;
  // Private (0700), naming its owner; the folders of mprun processes that died (SIGKILL, a crash) go first.
  const dir = makeJobDir();
  const cleanups: Array<() => void> = [() => rmSync(dir, { recursive: true, force: true })];
  try {
    let app = resolve(opts.app);
    if (needsCompile(app)) app = await compileApp(app, dir);
    return await launch(opts, jobId, dir, app, cleanups);
  } finally {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        c();
      } catch {
        // keep cleaning
      }
    }
  }
}

async function launch(opts: JobOptions, jobId: string, dir: string, app: string, cleanups: Array<() => void>): Promise<number> {
  const secret = randomBytes(32).toString('hex');
  // Hosts that are all this machine (localhost, its name, its addresses) make a local job, without ssh.
  const local = (host: string): boolean => !opts.slurm && opts.launchAgent === null && isLocalHost(host);
  const remote = opts.hosts !== null && !opts.hosts.every((h) => local(h.host));
  if (opts.hosts !== null && !remote) placeRanks(opts.hosts, opts.np, opts.mapBy, opts.oversubscribe); // the slot check
  const plans: NodePlan[] = remote ? placeRanks(opts.hosts!, opts.np, opts.mapBy, opts.oversubscribe) : [{ host: hostname(), ranks: Array.from({ length: opts.np }, (_, r) => r) }];
  const launchCmd = launchCommand(opts);
  const config = readConfig(Math.max(...plans.map((p) => p.ranks.length)));
  const grace = Number(process.env.MPRUN_KILL_GRACE_MS ?? 2000);

  const ranks: RankState[] = [];
  plans.forEach((p, node) => p.ranks.forEach((rank) => (ranks[rank] = { rank, node, pid: -1, exited: false, connected: false, finalized: false, failure: null })));
  const links: NodeLink[] = [];
  let aborting = false;
  let abortCode = 0;
  let killTimer: NodeJS.Timeout | null = null;
  let live = opts.np;
  let allExited!: () => void;
  const done = new Promise<void>((r) => (allExited = r));

  const tag = (rank: number, stream: string): string => (opts.tagOutput ? `[${jobId},${rank}]<${stream}>:` : '');
  const sinks = ranks.map((r) => [new LineSink(process.stdout, tag(r.rank, 'stdout')), new LineSink(process.stderr, tag(r.rank, 'stderr'))] as const);

  // Where ranks wait (printed on --timeout, SIGUSR1 and --report-hangs).
  const hangs = new HangReports();
  const reportWaits = (): void => {
    for (const line of hangs.lines(ranks.filter((r) => !r.exited).map((r) => r.rank))) log(line);
  };

  const abort = (reason: string, code: number, sig: NodeJS.Signals = 'SIGTERM'): void => {
    if (aborting) return;
    aborting = true;
    abortCode = code;
    log(reason);
    for (const l of links) l.send({ t: 'abort', reason, signal: sig });
    killTimer = setTimeout(() => {
      for (const l of links) l.send({ t: 'signal', signal: 'SIGKILL' });
      // An agent that cannot be reached any more: its node is lost; end the wait.
      setTimeout(() => {
        for (const r of ranks) if (!r.exited) rankExited(r.rank, r.pid, null, 'SIGKILL');
      }, grace).unref();
    }, grace);
  };

  const rankExited = (rank: number, pid: number, code: number | null, signal: string | null): void => {
    const r = ranks[rank];
    if (r === undefined || r.exited) return;
    r.exited = true;
    if (pid > 0) r.pid = pid;
    links[r.node]!.live--;
    sinks[rank]![0].end();
    sinks[rank]![1].end();
    // A rank that left because the job is aborting did not fail on its own.
    const failed = code !== ABORTED_EXIT_CODE && (signal !== null || code !== 0 || (r.connected && !r.finalized && live > 1));
    if (failed && !aborting) {
      r.failure = signal !== null ? 128 + signalNumber(signal) : code !== 0 ? code! : 1;
      const cause = signal !== null ? `was killed by ${signal}` : code !== 0 ? `exited with code ${code}` : 'exited without calling finalize';
      abort(`rank ${rank} (pid ${r.pid}${remote ? ` on ${plans[r.node]!.host}` : ''}) ${cause}; aborting the job`, r.failure);
    } else if (failed && signal === null && code !== 0 && code !== abortCode) {
      r.failure = code; // failed on its own while the job was already aborting
    }
    if (--live === 0) allExited();
  };

  const onEvent = (node: number, e: AgentEvent): void => {
    switch (e.t) {
      case 'started':
        ranks[e.rank]!.pid = e.pid;
        break;
      case 'out':
        sinks[e.rank]?.[e.fd === 1 ? 0 : 1].push(Buffer.from(e.data));
        break;
      case 'exit':
        rankExited(e.rank, e.pid, e.code, e.signal);
        break;
      case 'failed':
        abort(`node ${plans[node]!.host} could not start its ranks: ${e.message}`, 1);
        for (const rank of plans[node]!.ranks) rankExited(rank, -1, 1, null);
        break;
    }
  };

  const controller = new Controller(
    secret,
    opts.np,
    {
      abort: (rank, code, message) => abort(`rank ${rank} (pid ${ranks[rank]?.pid ?? '?'}) called abort: ${message || `exit code ${code}`}`, code),
      finalized: (rank) => {
        const r = ranks[rank];
        if (r !== undefined) r.finalized = true;
      },
      rejected: (why) => log(`closed a control connection: ${why}`),
      waits: (rank, waits) => hangs.record(rank, waits),
      connected: (rank) => {
        const r = ranks[rank];
        if (r !== undefined) r.connected = true;
      },
      agentConnected: (node, send) => {
        const l = links[node]!;
        l.connected = true;
        l.lastHeard = Date.now();
        l.send = send;
        send({ t: 'launch', spec: spec(node) as unknown as Record<string, unknown> });
        if (aborting) send({ t: 'abort', reason: 'the job is aborting', signal: 'SIGKILL' });
      },
      agentFrame: (node, f) => {
        links[node]!.lastHeard = Date.now();
        if (f.t !== 'hb') onEvent(node, f as unknown as AgentEvent);
      },
      agentClosed: (node) => nodeLost(node, 'its agent disconnected'),
    },
    plans.length,
  );

  let address: string;
  let nodesReachUs = '127.0.0.1';
  if (!remote) {
    address = await controller.listen({ path: join(dir, 'control.sock') });
  } else {
    // On the interface the nodes reach us by, not on every interface.
    nodesReachUs = opts.controllerAddress ?? process.env.MPRUN_CONTROLLER_ADDRESS ?? routeSource(resolveAddress(plans[0]!.host, launchCmd, opts.slurm));
    address = await controller.listen({ host: nodesReachUs });
  }
  cleanups.push(() => controller.close());

  // Checkpoint targets: a daemon each for the job's duration, before any rank starts.
  let ckpt: string | null = null;
  if (opts.job !== null) {
    const wanted = opts.ckptTargets.length > 0 ? opts.ckptTargets : [defaultTarget()];
    // The job's name is one mprun's at a time: a second one is refused now, not when its checkpoints collide.
    cleanups.push(claimJob(opts.job, wanted));
    const targets = await startTargets(wanted, secret, nodesReachUs, log);
    cleanups.push(() => targets.stop());
    // Resuming needs the rank count the checkpoints were made with: refuse another before any rank starts.
    const state = await committedState(targets.endpoints, opts.job);
    const made = state?.nranks ?? null;
    if (made !== null && made !== opts.np) {
      throw new Error(`job ${opts.job} was checkpointed by ${made} ranks; this run asks for ${opts.np}. Run it with -n ${made}, or start afresh after \`mprun checkpoints remove --job ${opts.job}\``);
    }
    if (state?.newest != null) log(resumeLine(opts.job, state.newest));
    ckpt = JSON.stringify({ job: opts.job, targets: targets.endpoints.map((e) => ({ label: e.label, address: e.address, port: e.port })) });
  }

  const jobEnv: Record<string, string> = {
    MPRUN_HANG_REPORT_MS: String(hangReportMs(opts.timeoutSeconds, opts.reportHangsSeconds)),
    ...opts.env,
    MPRUN_SIZE: String(opts.np),
    MPRUN_JOBID: jobId,
    MPRUN_CONTROLLER: address,
    MPRUN_SECRET: secret,
    MPRUN_NNODES: String(plans.length),
    ...(ckpt !== null ? { MPRUN_CKPT: ckpt } : {}),
  };
  const appSource = remote ? readFileSync(app, 'utf8') : null;
  const spec = (node: number): LaunchSpec => ({
    jobId,
    nodeIndex: node,
    node: plans[node]!.host,
    ranks: plans[node]!.ranks,
    size: opts.np,
    app,
    appSource,
    args: opts.args,
    env: jobEnv,
    bind: opts.bindTo,
    queueBytes: config.queueBytes,
    teamSlots: config.teamSlots,
  });

  const nodeLost = (node: number, why: string): void => {
    const l = links[node]!;
    if (l.live <= 0) return;
    if (!aborting) abort(`node ${plans[node]!.host} lost: ${why}; aborting the job`, 1, 'SIGKILL');
    for (const rank of plans[node]!.ranks) if (!ranks[rank]!.exited) rankExited(rank, -1, null, 'SIGKILL');
  };

  /** Starts remote agents: `argv` runs them; a lost process loses `nodes`. */
  const startAgents = (argv: string[], nodes: number[], label: string): void => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    // The secret goes on stdin, never on a command line; stdin stays open: its end stops the agents.
    child.stdin.on('error', () => undefined);
    child.stdin.write(`${secret}\n`);
    const errors = new LineSink(process.stderr, `mprun: ${label}: `);
    child.stderr.on('data', (d: Buffer) => errors.push(d));
    child.stdout.on('data', (d: Buffer) => errors.push(d));
    child.on('error', (e) => nodes.forEach((n) => nodeLost(n, `cannot run ${argv[0]}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      errors.end();
      nodes.forEach((n) => nodeLost(n, `${basename(argv[0]!)} exited (${signal ?? `code ${code}`})`));
    });
    cleanups.push(() => {
      child.stdin.end();
      child.kill('SIGTERM');
    });
  };
  const agentCmd = (node: string): string =>
    ['cd', shellQuote(process.cwd()), '&&', 'exec', shellQuote(process.execPath), shellQuote(join(packageRoot, 'bin', 'mprun.js')), '--agent', shellQuote(address), '--node', node].join(' ');

  plans.forEach((plan, node) => {
    if (!remote) {
      const agent = new NodeAgent(spec(node), (e) => onEvent(node, e), { secret, listen: { path: join(dir, 'agent.sock') }, log });
      const link: NodeLink = {
        live: plan.ranks.length,
        connected: true,
        lastHeard: Infinity,
        send: (f) => {
          if (f.t === 'abort') agent.abort(String(f.reason), f.signal as NodeJS.Signals);
          else if (f.t === 'signal') agent.signal(f.signal as NodeJS.Signals);
          else if (f.t === 'stdin') agent.stdin(f.data instanceof Uint8Array ? f.data : null);
        },
      };
      links.push(link);
      cleanups.push(() => agent.cleanup());
      agent.start().catch((e: unknown) => onEvent(node, { t: 'failed', message: (e as Error).message }));
      return;
    }
    // The agent may take a while to connect (ssh, srun): grace before heartbeats count.
    links.push({ live: plan.ranks.length, connected: false, lastHeard: Date.now() + 10_000, send: () => undefined });
    if (!opts.slurm) startAgents(local(plan.host) ? ['sh', '-c', agentCmd(String(node))] : [...launchCmd.cmd, plan.host, agentCmd(String(node))], [node], plan.host);
  });
  if (remote && opts.slurm) {
    // One srun for every node's agent, one task per node, stdin (the secret) to all.
    const nodes = plans.map((p) => p.host);
    // Where Slurm binds tasks, an agent bound to one CPU would confine its ranks to it.
    const binds = /TaskPlugin\s*=.*(affinity|cgroup)/.test(spawnSync('scontrol', ['show', 'config'], { encoding: 'utf8' }).stdout ?? '');
    startAgents(
      ['srun', `--nodes=${nodes.length}`, `--ntasks=${nodes.length}`, '--ntasks-per-node=1', `--nodelist=${nodes.join(',')}`, '--input=all', '--kill-on-bad-exit=1', ...(binds ? ['--cpu-bind=none'] : []), 'sh', '-c', agentCmd('slurm')],
      plans.map((_, i) => i),
      'srun',
    );
  }

  // Heartbeats with remote agents: a node whose network is cut goes silent, it does not disconnect.
  if (remote) {
    const beat = setInterval(() => {
      links.forEach((l, node) => {
        if (l.live <= 0) return;
        if (Date.now() - l.lastHeard > HEARTBEAT_TIMEOUT_MS) nodeLost(node, `no heartbeat for ${HEARTBEAT_TIMEOUT_MS} ms (network or node down)`);
        else if (l.connected) l.send({ t: 'hb' });
      });
    }, HEARTBEAT_MS);
    cleanups.push(() => clearInterval(beat));
  }

  // stdin goes to rank 0.
  const rank0 = links[ranks[0]!.node]!;
  const onStdin = (d: Buffer): void => rank0.send({ t: 'stdin', data: d });
  const onStdinEnd = (): void => rank0.send({ t: 'stdin', data: null });
  try {
    process.stdin.on('data', onStdin);
    process.stdin.on('end', onStdinEnd);
    process.stdin.on('error', onStdinEnd);
  } catch {
    onStdinEnd();
  }

  const onSignal = (sig: NodeJS.Signals): void => {
    if (aborting) {
      for (const l of links) l.send({ t: 'signal', signal: 'SIGKILL' });
      return;
    }
    abort(`received ${sig}; stopping ${live} rank(s)`, 128 + signalNumber(sig), sig);
  };
  const onUsr1 = (): void => reportWaits();
  process.on('SIGUSR1', onUsr1);
  const onInt = (): void => onSignal('SIGINT');
  const onTerm = (): void => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  process.on('SIGHUP', onTerm);
  // If mprun itself is about to exit for any reason, take the ranks along.
  const onExit = (): void => {
    for (const l of links) l.send({ t: 'signal', signal: 'SIGKILL' });
  };
  process.on('exit', onExit);
  cleanups.push(() => {
    process.off('SIGUSR1', onUsr1);
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    process.off('SIGHUP', onTerm);
    process.off('exit', onExit);
    process.stdin.off('data', onStdin);
    process.stdin.off('end', onStdinEnd);
    process.stdin.off('error', onStdinEnd);
    process.stdin.pause();
  });

  let timeout: NodeJS.Timeout | null = null;
  if (opts.timeoutSeconds !== null) {
    timeout = setTimeout(() => {
      reportWaits();
      abort(`the job exceeded --timeout ${opts.timeoutSeconds} s; stopping it`, TIMEOUT_EXIT_CODE);
    }, opts.timeoutSeconds * 1000);
  }
  let hangWatch: NodeJS.Timeout | null = null;
  if (opts.reportHangsSeconds !== null) {
    const after = opts.reportHangsSeconds;
    let printed = '';
    hangWatch = setInterval(() => {
      const running = ranks.filter((r) => !r.exited).map((r) => r.rank);
      if (aborting || !hangs.allWaiting(running, after) || hangs.key() === printed) return;
      printed = hangs.key();
      reportWaits();
    }, Math.min(1000, after * 250));
  }

  await done;
  if (timeout !== null) clearTimeout(timeout);
  if (hangWatch !== null) clearInterval(hangWatch);
  if (killTimer !== null) clearTimeout(killTimer);
  for (const l of links) l.send({ t: 'done' });

  const failed = ranks.find((r) => r.failure !== null);
  if (failed !== undefined) return failed.failure!;
  return aborting ? abortCode : 0;
}
