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
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { packageRoot } from '../native/index.js';
import { configVariables, readConfig, type RuntimeConfig } from '../runtime/config.js';
import { HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS, NodeAgent, type AgentEvent, type LaunchSpec } from './agent.js';
import { compileApp, needsCompile } from './compile.js';
import { makeJobDir, removeJobDir } from './tmpdirs.js';
import { Controller } from './controller.js';
import { isLocalHost, placeRanks, type HostSlots, type NodePlan } from './hosts.js';
import { LineSink, watchOutput } from './stdio.js';
import { HangReports, hangReportMs } from './hangs.js';
import { ExitRules, signalNumber, type RankState } from './exit-rules.js';
import { launchCommand, resolveAddress, routeSource, type LaunchCommand } from './route.js';
import { shellQuote } from '../core/shell.js';
import type { Frame } from '../core/wire.js';
import { encodeLayout } from '../core/layout.js';
import { TIMEOUT_EXIT_CODE } from './exit-codes.js';
import { claimJob, committedState, defaultTarget, resumeLine, startTargets } from './ckpt.js';
import type { CheckpointTarget } from './ckpt.js';
import { randomHex } from '../core/random.js';

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

export async function runJob(opts: JobOptions): Promise<number> {
  const jobId = `${process.pid}.${randomHex(3)}`;
  // Private (0700), naming its owner; the folders of mprun processes that died (SIGKILL, a crash) go first.
  const dir = makeJobDir();
  const cleanups: Array<() => void> = [() => removeJobDir(dir)];
  try {
    let app = resolve(opts.app);
    if (needsCompile(app)) app = await compileApp(app, dir, { rank: true });
    return await new JobController(opts, jobId, dir, app, cleanups).run();
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

/**
 * One job from start to exit code: listens for its ranks and agents, starts
 * the checkpoint targets and the agents (in this process for a local job),
 * forwards output and stdin, watches heartbeats, signals and timeouts, and
 * applies the exit rules (exit-rules.ts) to every rank's end.
 */
class JobController {
  readonly #opts: JobOptions;
  readonly #jobId: string;
  readonly #dir: string;
  readonly #app: string;
  readonly #cleanups: Array<() => void>;
  readonly #secret = randomHex(32);
  readonly #plans: NodePlan[];
  /** Whether any node is another machine (agents over ssh/srun, the controller on TCP). */
  readonly #remote: boolean;
  readonly #launch: LaunchCommand;
  readonly #config: RuntimeConfig;
  readonly #graceMs = Number(process.env.MPRUN_KILL_GRACE_MS ?? 2000);
  readonly #rules: ExitRules;
  readonly #links: NodeLink[] = [];
  readonly #sinks: Array<readonly [LineSink, LineSink]>;
  /** Where ranks wait (printed on --timeout, SIGUSR1 and --report-hangs). */
  readonly #hangs = new HangReports();
  readonly #controller: Controller;
  #killTimer: NodeJS.Timeout | null = null;
  #allExited!: () => void;
  readonly #done = new Promise<void>((r) => (this.#allExited = r));
  /** The compiled app's text, sent to remote agents (which have no copy of our job folder). */
  readonly #appSource: string | null;
  readonly #appMap: string | null;
  #address = '';
  #jobEnv: Record<string, string> = {};

  constructor(opts: JobOptions, jobId: string, dir: string, app: string, cleanups: Array<() => void>) {
    this.#opts = opts;
    this.#jobId = jobId;
    this.#dir = dir;
    this.#app = app;
    this.#cleanups = cleanups;
    // Hosts that are all this machine (localhost, its name, its addresses) make a local job, without ssh.
    this.#remote = opts.hosts !== null && !opts.hosts.every((h) => this.#isLocal(h.host));
    if (opts.hosts !== null && !this.#remote) placeRanks(opts.hosts, opts.np, opts.mapBy, opts.oversubscribe); // the slot check
    this.#plans = this.#remote ? placeRanks(opts.hosts!, opts.np, opts.mapBy, opts.oversubscribe) : [{ host: hostname(), ranks: Array.from({ length: opts.np }, (_, r) => r) }];
    this.#launch = launchCommand(opts.launchAgent);
    this.#appSource = this.#remote ? readFileSync(app, 'utf8') : null;
    this.#appMap = this.#remote && existsSync(`${app}.map`) ? readFileSync(`${app}.map`, 'utf8') : null;
    this.#config = readConfig(Math.max(...this.#plans.map((p) => p.ranks.length)));
    const ranks: RankState[] = [];
    this.#plans.forEach((p, node) => p.ranks.forEach((rank) => (ranks[rank] = { rank, node, pid: -1, exited: false, connected: false, finalized: false, failure: null })));
    this.#rules = new ExitRules(ranks);
    const tag = (rank: number, stream: string): string => (opts.tagOutput ? `[${jobId},${rank}]<${stream}>:` : '');
    this.#sinks = ranks.map((r) => [new LineSink(process.stdout, tag(r.rank, 'stdout')), new LineSink(process.stderr, tag(r.rank, 'stderr'))] as const);
    this.#controller = new Controller(
      this.#secret,
      opts.np,
      {
        abort: (rank, code, message) => this.#abort(`rank ${rank} (pid ${ranks[rank]?.pid ?? '?'}) called abort: ${message || `exit code ${code}`}`, code),
        finalized: (rank) => {
          const r = ranks[rank];
          if (r !== undefined) r.finalized = true;
        },
        rejected: (why) => log(`closed a control connection: ${why}`),
        waits: (rank, waits) => this.#hangs.record(rank, waits),
        connected: (rank) => {
          const r = ranks[rank];
          if (r !== undefined) r.connected = true;
        },
        agentConnected: (node, send) => {
          const l = this.#links[node]!;
          l.connected = true;
          l.lastHeard = Date.now();
          l.send = send;
          send({ t: 'launch', spec: this.#spec(node) as unknown as Record<string, unknown> });
          if (this.#rules.aborting) send({ t: 'abort', reason: 'the job is aborting', signal: 'SIGKILL' });
        },
        agentFrame: (node, f) => {
          this.#links[node]!.lastHeard = Date.now();
          if (f.t !== 'hb') this.#onEvent(node, f as unknown as AgentEvent);
        },
        agentClosed: (node) => this.#nodeLost(node, 'its agent disconnected'),
      },
      this.#plans.length,
    );
  }

  async run(): Promise<number> {
    const opts = this.#opts;
    let nodesReachUs = '127.0.0.1';
    if (!this.#remote) {
      this.#address = await this.#controller.listen({ path: join(this.#dir, 'control.sock') });
    } else {
      // On the interface the nodes reach us by, not on every interface.
      nodesReachUs = opts.controllerAddress ?? process.env.MPRUN_CONTROLLER_ADDRESS ?? routeSource(resolveAddress(this.#plans[0]!.host, this.#launch, opts.slurm));
      this.#address = await this.#controller.listen({ host: nodesReachUs });
    }
    this.#cleanups.push(() => this.#controller.close());
    const ckpt = await this.#startCheckpointTargets(nodesReachUs);
    this.#jobEnv = {
      ...configVariables(),
      MPRUN_HANG_REPORT_MS: String(hangReportMs(opts.timeoutSeconds, opts.reportHangsSeconds)),
      ...opts.env,
      MPRUN_SIZE: String(opts.np),
      MPRUN_JOBID: this.#jobId,
      MPRUN_CONTROLLER: this.#address,
      MPRUN_SECRET: this.#secret,
      MPRUN_NNODES: String(this.#plans.length),
      // Which node each rank is on, O(nodes) text: ranks know their node peers and every peer's node
      // without anyone's card (cards are fetched from the controller on first use; issue 12.4).
      MPRUN_LAYOUT: encodeLayout(this.#plans.map((p) => p.ranks)),
      ...(ckpt !== null ? { MPRUN_CKPT: ckpt } : {}),
    };
    this.#startAgents();
    if (this.#remote) this.#watchHeartbeats();
    this.#forwardStdin();
    this.#handleSignals();
    const stopTimers = this.#startTimers();
    await this.#done;
    if (this.#config.debug) this.#logCardTraffic();
    stopTimers();
    if (this.#killTimer !== null) clearTimeout(this.#killTimer);
    for (const l of this.#links) l.send({ t: 'done' });
    return this.#rules.exitCode();
  }

  /** MPRUN_DEBUG: what the card service sent, in all and to the busiest rank (O(local + used) each, never O(p)). */
  #logCardTraffic(): void {
    let cards = 0;
    let bytes = 0;
    let most = { rank: -1, cards: 0, bytes: 0 };
    for (const [rank, t] of this.#controller.traffic()) {
      cards += t.cards;
      bytes += t.bytes;
      if (t.bytes > most.bytes) most = { rank, cards: t.cards, bytes: t.bytes };
    }
    log(`wire-up: the controller sent ${cards} cards (${bytes} bytes) to ${this.#opts.np} ranks; the most to rank ${most.rank}: ${most.cards} cards (${most.bytes} bytes)`);
  }

  /** Hosts that are this machine are reached without ssh (unless Slurm or --launch-agent starts the agents). */
  #isLocal(host: string): boolean {
    return !this.#opts.slurm && this.#opts.launchAgent === null && isLocalHost(host);
  }

  /** Checkpoint targets: a daemon each for the job's duration, before any rank starts; the ranks' MPRUN_CKPT. */
  async #startCheckpointTargets(nodesReachUs: string): Promise<string | null> {
    const { job, ckptTargets, np } = this.#opts;
    if (job === null) return null;
    const wanted = ckptTargets.length > 0 ? ckptTargets : [defaultTarget()];
    // The job's name is one mprun's at a time: a second one is refused now, not when its checkpoints collide.
    this.#cleanups.push(claimJob(job, wanted));
    const targets = await startTargets(wanted, this.#secret, nodesReachUs, log);
    this.#cleanups.push(() => targets.stop());
    // Resuming needs the rank count the checkpoints were made with: refuse another before any rank starts.
    const state = await committedState(targets.endpoints, job);
    const made = state?.nranks ?? null;
    if (made !== null && made !== np) {
      throw new Error(`job ${job} was checkpointed by ${made} ranks; this run asks for ${np}. Run it with -n ${made}, or start afresh after \`mprun checkpoints remove --job ${job}\``);
    }
    if (state?.newest != null) log(resumeLine(job, state.newest));
    return JSON.stringify({ job, targets: targets.endpoints.map((e) => ({ label: e.label, address: e.address, port: e.port })) });
  }

  #spec(node: number): LaunchSpec {
    const plan = this.#plans[node]!;
    return {
      jobId: this.#jobId,
      nodeIndex: node,
      node: plan.host,
      ranks: plan.ranks,
      size: this.#opts.np,
      app: this.#app,
      appSource: this.#appSource,
      appMap: this.#appMap,
      args: this.#opts.args,
      env: this.#jobEnv,
      bind: this.#opts.bindTo,
      queueBytes: this.#config.queueBytes,
      teamSlots: this.#config.teamSlots,
    };
  }

  #abort(reason: string, code: number, sig: NodeJS.Signals = 'SIGTERM', quiet = false): void {
    if (!this.#rules.startAbort(code)) return;
    if (!quiet) log(reason);
    for (const l of this.#links) l.send({ t: 'abort', reason, signal: sig });
    this.#killTimer = setTimeout(() => {
      for (const l of this.#links) l.send({ t: 'signal', signal: 'SIGKILL' });
      // An agent that cannot be reached any more: its node is lost; end the wait.
      setTimeout(() => {
        for (const r of this.#rules.ranks) if (!r.exited) this.#rankExited(r.rank, r.pid, null, 'SIGKILL');
      }, this.#graceMs).unref();
    }, this.#graceMs);
  }

  #rankExited(rank: number, pid: number, code: number | null, signal: string | null): void {
    const verdict = this.#rules.exited(rank, pid, code, signal);
    if (verdict === null) return;
    const r = this.#rules.ranks[rank]!;
    this.#links[r.node]!.live--;
    this.#sinks[rank]![0].end();
    this.#sinks[rank]![1].end();
    if (verdict.abort !== null) {
      const where = this.#remote ? ` on ${this.#plans[r.node]!.host}` : '';
      this.#abort(`rank ${rank} (pid ${r.pid}${where}) ${verdict.abort.cause}; aborting the job`, verdict.abort.code);
    }
    if (this.#rules.live === 0) this.#allExited();
  }

  #onEvent(node: number, e: AgentEvent): void {
    switch (e.t) {
      case 'started':
        this.#rules.ranks[e.rank]!.pid = e.pid;
        break;
      case 'out':
        this.#sinks[e.rank]?.[e.fd === 1 ? 0 : 1].push(Buffer.from(e.data));
        break;
      case 'exit':
        this.#rankExited(e.rank, e.pid, e.code, e.signal);
        break;
      case 'failed':
        this.#abort(`node ${this.#plans[node]!.host} could not start its ranks: ${e.message}`, 1);
        for (const rank of this.#plans[node]!.ranks) this.#rankExited(rank, -1, 1, null);
        break;
    }
  }

  #nodeLost(node: number, why: string): void {
    const l = this.#links[node]!;
    if (l.live <= 0) return;
    // The ranks that ran there are named too (as runs, so a node of 64 ranks is a few
    // characters): the surviving ranks were blocked in collectives or transfers with them,
    // and the user reading this must know whose data never came.
    const plan = this.#plans[node]!;
    const ranks = `rank${plan.ranks.length === 1 ? '' : 's'} ${encodeLayout([plan.ranks]).replace(/,/g, ', ')}`;
    if (!this.#rules.aborting) this.#abort(`node ${plan.host} lost: ${why}; ${ranks} ran there; aborting the job`, 1, 'SIGKILL');
    for (const rank of this.#plans[node]!.ranks) if (!this.#rules.ranks[rank]!.exited) this.#rankExited(rank, -1, null, 'SIGKILL');
  }

  /** Runs remote agents with `argv`; the secret goes on stdin. A lost process loses `nodes`. */
  #spawnAgents(argv: string[], nodes: number[], label: string): void {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    // The secret goes on stdin, never on a command line; stdin stays open: its end stops the agents.
    child.stdin.on('error', () => undefined);
    child.stdin.write(`${this.#secret}\n`);
    const errors = new LineSink(process.stderr, `mprun: ${label}: `);
    child.stderr.on('data', (d: Buffer) => errors.push(d));
    child.stdout.on('data', (d: Buffer) => errors.push(d));
    child.on('error', (e) => nodes.forEach((n) => this.#nodeLost(n, `cannot run ${argv[0]}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      errors.end();
      nodes.forEach((n) => this.#nodeLost(n, `${basename(argv[0]!)} exited (${signal ?? `code ${code}`})`));
    });
    this.#cleanups.push(() => {
      child.stdin.end();
      child.kill('SIGTERM');
    });
  }

  #agentCommand(node: string): string {
    // Without NODE_EXTRA_CA_CERTS, which Node parses as it starts (bin/mprun.js says why): the agent makes
    // no TLS connection, and its ranks get the variable from the job's own -x, if at all.
    return ['cd', shellQuote(process.cwd()), '&&', 'exec', 'env', '-u', 'NODE_EXTRA_CA_CERTS', shellQuote(process.execPath), shellQuote(join(packageRoot, 'bin', 'mprun.js')), '--agent', shellQuote(this.#address), '--node', node].join(' ');
  }

  /** One agent per node: in this process for a local job, else over ssh (or --launch-agent), or one srun for all. */
  #startAgents(): void {
    const { slurm } = this.#opts;
    this.#plans.forEach((plan, node) => {
      if (!this.#remote) {
        const agent = new NodeAgent(this.#spec(node), (e) => this.#onEvent(node, e), { secret: this.#secret, listen: { path: join(this.#dir, 'agent.sock') }, log });
        this.#links.push({
          live: plan.ranks.length,
          connected: true,
          lastHeard: Infinity,
          send: (f) => {
            if (f.t === 'abort') agent.abort(String(f.reason), f.signal as NodeJS.Signals);
            else if (f.t === 'signal') agent.signal(f.signal as NodeJS.Signals);
            else if (f.t === 'stdin') agent.stdin(f.data instanceof Uint8Array ? f.data : null);
          },
        });
        this.#cleanups.push(() => agent.cleanup());
        agent.start().catch((e: unknown) => this.#onEvent(node, { t: 'failed', message: (e as Error).message }));
        return;
      }
      // The agent may take a while to connect (ssh, srun): grace before heartbeats count.
      this.#links.push({ live: plan.ranks.length, connected: false, lastHeard: Date.now() + 10_000, send: () => undefined });
      if (!slurm) this.#spawnAgents(this.#isLocal(plan.host) ? ['sh', '-c', this.#agentCommand(String(node))] : [...this.#launch.cmd, plan.host, this.#agentCommand(String(node))], [node], plan.host);
    });
    if (this.#remote && slurm) {
      // One srun for every node's agent, one task per node, stdin (the secret) to all.
      const nodes = this.#plans.map((p) => p.host);
      // Where Slurm binds tasks, an agent bound to one CPU would confine its ranks to it.
      const binds = /TaskPlugin\s*=.*(affinity|cgroup)/.test(spawnSync('scontrol', ['show', 'config'], { encoding: 'utf8' }).stdout ?? '');
      this.#spawnAgents(
        ['srun', `--nodes=${nodes.length}`, `--ntasks=${nodes.length}`, '--ntasks-per-node=1', `--nodelist=${nodes.join(',')}`, '--input=all', '--kill-on-bad-exit=1', ...(binds ? ['--cpu-bind=none'] : []), 'sh', '-c', this.#agentCommand('slurm')],
        this.#plans.map((_, i) => i),
        'srun',
      );
    }
  }

  /** Heartbeats with remote agents: a node whose network is cut goes silent, it does not disconnect. */
  #watchHeartbeats(): void {
    const beat = setInterval(() => {
      this.#links.forEach((l, node) => {
        if (l.live <= 0) return;
        if (Date.now() - l.lastHeard > HEARTBEAT_TIMEOUT_MS) this.#nodeLost(node, `no heartbeat for ${HEARTBEAT_TIMEOUT_MS} ms (network or node down)`);
        else if (l.connected) l.send({ t: 'hb' });
      });
    }, HEARTBEAT_MS);
    this.#cleanups.push(() => clearInterval(beat));
  }

  /** stdin goes to rank 0. */
  #forwardStdin(): void {
    const rank0 = this.#links[this.#rules.ranks[0]!.node]!;
    const onStdin = (d: Buffer): void => rank0.send({ t: 'stdin', data: d });
    const onStdinEnd = (): void => rank0.send({ t: 'stdin', data: null });
    try {
      process.stdin.on('data', onStdin);
      process.stdin.on('end', onStdinEnd);
      process.stdin.on('error', onStdinEnd);
    } catch {
      onStdinEnd();
    }
    this.#cleanups.push(() => {
      process.stdin.off('data', onStdin);
      process.stdin.off('end', onStdinEnd);
      process.stdin.off('error', onStdinEnd);
      process.stdin.pause();
    });
  }

  /** SIGINT/SIGTERM/SIGHUP stop the ranks (SIGKILL on a second one), SIGUSR1 prints where they wait; an exiting mprun takes them along. */
  #handleSignals(): void {
    const onSignal = (sig: NodeJS.Signals): void => {
      if (this.#rules.aborting) {
        for (const l of this.#links) l.send({ t: 'signal', signal: 'SIGKILL' });
        return;
      }
      this.#abort(`received ${sig}; stopping ${this.#rules.live} rank(s)`, 128 + signalNumber(sig), sig);
    };
    const onUsr1 = (): void => this.#reportWaits();
    const onInt = (): void => onSignal('SIGINT');
    const onTerm = (): void => onSignal('SIGTERM');
    const onExit = (): void => {
      for (const l of this.#links) l.send({ t: 'signal', signal: 'SIGKILL' });
    };
    // As SIGPIPE ends a C program whose reader went away (`mprun ... | head`): quietly, exit 141.
    const unwatch = watchOutput(() => this.#abort('the output is closed', 128 + signalNumber('SIGPIPE'), 'SIGTERM', true));
    process.on('SIGUSR1', onUsr1);
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    process.on('SIGHUP', onTerm);
    process.on('exit', onExit);
    this.#cleanups.push(() => {
      process.off('SIGUSR1', onUsr1);
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      process.off('SIGHUP', onTerm);
      process.off('exit', onExit);
      unwatch();
    });
  }

  /** --timeout and --report-hangs; returns what stops them. */
  #startTimers(): () => void {
    const { timeoutSeconds, reportHangsSeconds } = this.#opts;
    let timeout: NodeJS.Timeout | null = null;
    if (timeoutSeconds !== null) {
      timeout = setTimeout(() => {
        this.#reportWaits();
        this.#abort(`the job exceeded --timeout ${timeoutSeconds} s; stopping it`, TIMEOUT_EXIT_CODE);
      }, timeoutSeconds * 1000);
    }
    let hangWatch: NodeJS.Timeout | null = null;
    if (reportHangsSeconds !== null) {
      let printed = '';
      hangWatch = setInterval(() => {
        if (this.#rules.aborting || !this.#hangs.allWaiting(this.#running(), reportHangsSeconds) || this.#hangs.key() === printed) return;
        printed = this.#hangs.key();
        this.#reportWaits();
      }, Math.min(1000, reportHangsSeconds * 250));
    }
    return () => {
      if (timeout !== null) clearTimeout(timeout);
      if (hangWatch !== null) clearInterval(hangWatch);
    };
  }

  #running(): number[] {
    return this.#rules.ranks.filter((r) => !r.exited).map((r) => r.rank);
  }

  #reportWaits(): void {
    for (const line of this.#hangs.lines(this.#running())) log(line);
  }
}
