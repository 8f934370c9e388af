/**
 * The node agent (Open MPI's prted, Hydra's proxy, libdsm's arbiter): one per
 * node. It makes the node's control segment, starts the node's ranks (bound to
 * cores, dying with it), and relays their output, their exits and the signals
 * mprun sends. Local jobs run it inside mprun; on other nodes it runs as
 * `mprun --agent ADDRESS` started over ssh, reads the job secret from its
 * stdin, and stops its ranks when that stdin closes or mprun's connection
 * drops, so nothing outlives the job on any node.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../native/index.js';
import { ControlSegment } from '../transports/shm/control.js';
import type { DsmService } from '../transports/dsm/service.js';
import { makeJobDir, removeJobDir } from './tmpdirs.js';
import { RANK_BUNDLE_SUFFIX } from './stack-map.js';
import { encodeFrame, FrameReader, parseTcpAddress, WIRE_VERSION, type Frame } from '../core/wire.js';

/** What mprun tells an agent to start. */
export interface LaunchSpec {
  jobId: string;
  /** Index of this node in the job, and its name. */
  nodeIndex: number;
  node: string;
  /** World ranks on this node, ascending; the index is the local rank. */
  ranks: number[];
  size: number;
  /** The module to run, and its text for agents on other nodes to write locally. */
  app: string;
  appSource: string | null;
  /** A rank bundle's source map (compile.ts keeps it beside the bundle), written beside it likewise. */
  appMap: string | null;
  args: string[];
  /** The job's variables (MPRUN_* and -x); ranks also get the node's own environment. */
  env: Record<string, string>;
  bind: 'core' | 'none' | 'auto';
  queueBytes: number;
  teamSlots: number;
}

/** What an agent reports. */
export type AgentEvent =
  | { t: 'started'; rank: number; pid: number }
  | { t: 'out'; rank: number; fd: 1 | 2; data: Uint8Array }
  | { t: 'exit'; rank: number; pid: number; code: number | null; signal: string | null }
  | { t: 'failed'; message: string };

const here = dirname(fileURLToPath(import.meta.url));

/** Heartbeat period between mprun and its agents, and the silence after which the other side is lost. */
export const HEARTBEAT_MS = 1000;
export const HEARTBEAT_TIMEOUT_MS = Number(process.env.MPRUN_NODE_TIMEOUT_MS ?? 5000);

/** How long an exited rank's output may take to drain before its exit is reported anyway. */
const OUTPUT_DRAIN_MS = 1000;

/** Where an agent's data service listens (for other nodes: TCP on the node's address; else a Unix socket), and its secret. */
export interface DataService {
  secret: string;
  listen: { host: string } | { path: string };
  log(message: string): void;
}

export class NodeAgent {
  readonly #spec: LaunchSpec;
  readonly #emit: (e: AgentEvent) => void;
  readonly #data: DataService;
  readonly #children = new Map<number, ChildProcess>();
  readonly #cleanups: Array<() => void> = [];

  constructor(spec: LaunchSpec, emit: (e: AgentEvent) => void, data: DataService) {
    this.#spec = spec;
    this.#emit = emit;
    this.#data = data;
  }

  /** Ranks still running. */
  get live(): number {
    return this.#children.size;
  }

  /** Makes the node's control segment, starts its data service, then its ranks. */
  async start(): Promise<void> {
    const s = this.#spec;
    let app = s.app;
    if (s.appSource !== null) {
      // On another node: the compiled app is written to a private directory of ours.
      // Naming this agent its owner, so that the next mprun on this node removes it if the agent is killed.
      const dir = makeJobDir();
      this.#cleanups.push(() => removeJobDir(dir));
      app = join(dir, basename(s.app));
      writeFileSync(app, s.appSource);
      if (s.appMap !== null) writeFileSync(`${app}.map`, s.appMap); // hang reports and stacks name the .ts lines here too
    }
    const nlocal = s.ranks.length;
    const { segment: ctrl, fd: ctrlFd } = ControlSegment.create(nlocal, s.queueBytes, s.teamSlots);
    this.#cleanups.push(() => {
      ctrl.unmap();
      native().closeFd(ctrlFd);
    });
    this.#ctrl = ctrl;
    // The data service: other nodes' RMA and messages, and the named semaphores of every job (a
    // one-node job's ranks connect to it for those: world.dsm.semaphore()).
    const nnodes = Number(s.env.MPRUN_NNODES ?? 1);
    const { DsmService } = await import('../transports/dsm/service.js');
    const service: DsmService = new DsmService({ ctrl, ranks: s.ranks, nodeIndex: s.nodeIndex, nnodes, secret: this.#data.secret, log: this.#data.log });
    this.#cleanups.push(() => service.close());
    const agentAddress = await service.listen(this.#data.listen);
    const cpus = native().getAffinity();
    const bind = s.bind === 'core' || (s.bind === 'auto' && nlocal <= cpus.length);
    // mprun's (the job's variables, configVariables), else this node's own.
    const extra = (s.env.MPRUN_NODE_ARGS ?? process.env.MPRUN_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== '');
    // A rank bundle (compile.ts) is the whole rank: its prelude does what rank-main.js does, and
    // it maps its stacks itself when one is printed. Other apps (.js) go through rank-main.js,
    // with Node's source maps for mprun's frames.
    const args = app.endsWith(RANK_BUNDLE_SUFFIX) ? [...extra, app, ...s.args] : ['--enable-source-maps', ...extra, join(here, 'rank-main.js'), app, ...s.args];
    s.ranks.forEach((rank, local) => {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ...s.env,
        MPRUN_RANK: String(rank),
        MPRUN_LOCAL_RANK: String(local),
        MPRUN_LOCAL_SIZE: String(nlocal),
        MPRUN_NODE_NAME: s.node,
        MPRUN_NODE_INDEX: String(s.nodeIndex),
        MPRUN_CTRL_FD: '3',
        MPRUN_PARENT_PID: String(process.pid),
      };
      if (agentAddress !== '') env.MPRUN_AGENT_ADDR = agentAddress;
      else delete env.MPRUN_AGENT_ADDR;
      // A job started from a rank of another must not find that job's checkpoint targets.
      if (s.env.MPRUN_CKPT === undefined) delete env.MPRUN_CKPT;
      // Node 20 parses the certificate file named by NODE_EXTRA_CA_CERTS, and its own root
      // certificates, as every process starts: 90 ms of CPU per rank on the machine this was
      // measured on (`node -e 0`: 120 ms with it, 30 without), whether or not the rank ever
      // opens a TLS connection. Ranks of an app that does get it with -x NODE_EXTRA_CA_CERTS.
      if (s.env.NODE_EXTRA_CA_CERTS === undefined) delete env.NODE_EXTRA_CA_CERTS;
      if (bind) env.MPRUN_BIND_CPU = String(cpus[local % cpus.length]);
      else delete env.MPRUN_BIND_CPU;
      const child = spawn(process.execPath, args, {
        stdio: [rank === 0 ? 'pipe' : 'ignore', 'pipe', 'pipe', ctrlFd],
        env,
        detached: true, // its own process group, so that signals reach its children too
      });
      this.#children.set(rank, child);
      const pid = child.pid ?? -1;
      child.stdout!.on('data', (d: Buffer) => this.#emit({ t: 'out', rank, fd: 1, data: d }));
      child.stderr!.on('data', (d: Buffer) => this.#emit({ t: 'out', rank, fd: 2, data: d }));
      child.stdin?.on('error', () => undefined);
      let exited = false;
      const exit = (code: number | null, signal: string | null): void => {
        if (exited) return;
        exited = true;
        this.#children.delete(rank);
        this.#emit({ t: 'exit', rank, pid, code, signal });
      };
      child.on('error', (e) => {
        this.#emit({ t: 'out', rank, fd: 2, data: Buffer.from(`mprun: rank ${rank} could not start: ${e.message}\n`) });
        exit(127, null);
      });
      // Report the exit once its output has drained ('close'), but not later than
      // a second after it: a child the rank left behind may hold its stdout open.
      child.on('exit', (code, signal) => {
        const late = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
          exit(code, signal);
        }, OUTPUT_DRAIN_MS);
        child.once('close', () => {
          clearTimeout(late);
          exit(code, signal);
        });
      });
      this.#emit({ t: 'started', rank, pid });
    });
    const early = this.#earlyInput ?? [];
    this.#earlyInput = null;
    for (const d of early) this.stdin(d);
  }

  #ctrl: ControlSegment | null = null;

  /** Input for rank 0 before it started, in order. */
  #earlyInput: Array<Uint8Array | null> | null = [];

  /** Input for rank 0 (null: end of input). */
  stdin(data: Uint8Array | null): void {
    if (this.#earlyInput !== null) {
      this.#earlyInput.push(data);
      return;
    }
    const c = this.#children.get(0)?.stdin;
    if (!c) return;
    if (data === null) c.end();
    else c.write(data);
  }

  /** Marks the job aborted for this node's ranks (they stop waiting) and signals them. */
  abort(reason: string, sig: NodeJS.Signals): void {
    this.#ctrl?.abort(reason);
    this.signal(sig);
  }

  signal(sig: NodeJS.Signals): void {
    for (const child of this.#children.values()) {
      try {
        process.kill(-child.pid!, sig); // the rank's process group: its children too
      } catch {
        try {
          child.kill(sig);
        } catch {
          // already gone
        }
      }
    }
  }

  cleanup(): void {
    this.signal('SIGKILL');
    for (const c of this.#cleanups.splice(0).reverse()) {
      try {
        c();
      } catch {
        // keep cleaning
      }
    }
  }
}

/**
 * `mprun --agent ADDRESS --node INDEX`: the agent process on another node.
 * The secret comes as the first line of stdin; the end of stdin (mprun or its
 * ssh gone) or of the connection stops every rank of this node.
 */
export async function agentMain(address: string, nodeIndex: number): Promise<number> {
  const secret = await firstLine(process.stdin);
  if (secret === null) {
    process.stderr.write('mprun agent: no job secret on stdin\n');
    return 2;
  }
  // Keep reading stdin, only to learn when it ends (mprun, or its ssh, gone).
  process.stdin.on('data', () => undefined);
  process.stdin.resume();
  const tcp = parseTcpAddress(address);
  if (tcp === null) {
    process.stderr.write(`mprun agent: '${address}' is not HOST:PORT\n`);
    return 2;
  }
  const socket = connect(tcp);
  socket.setNoDelay(true);
  let agent: NodeAgent | null = null;
  let finishing = false;
  return new Promise<number>((resolve) => {
    const finish = (code: number): void => {
      if (finishing) return;
      finishing = true;
      agent?.cleanup();
      socket.destroy();
      resolve(code);
    };
    process.stdin.on('end', () => finish(1));
    process.stdin.on('close', () => finish(1));
    socket.on('error', (e) => {
      process.stderr.write(`mprun agent: connection to mprun at ${address}: ${e.message}\n`);
      finish(1);
    });
    socket.on('close', () => finish(agent !== null && agent.live === 0 ? 0 : 1));
    socket.on('connect', () => socket.write(encodeFrame({ t: 'auth', v: WIRE_VERSION, secret, role: 'agent', node: nodeIndex, pid: process.pid })));
    // Heartbeats both ways: a cut network closes no connection, silence does.
    let lastHeard = Date.now();
    const beat = setInterval(() => {
      if (Date.now() - lastHeard > HEARTBEAT_TIMEOUT_MS) {
        process.stderr.write(`mprun agent: nothing from mprun for ${HEARTBEAT_TIMEOUT_MS} ms; stopping this node's ranks\n`);
        finish(1);
      } else if (socket.writable) socket.write(encodeFrame({ t: 'hb' }));
    }, HEARTBEAT_MS);
    socket.on('close', () => clearInterval(beat));
    const reader = new FrameReader();
    const send = (e: AgentEvent): void => void socket.write(encodeFrame(e as unknown as Frame));
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (e) {
        process.stderr.write(`mprun agent: bad frame from mprun: ${(e as Error).message}\n`);
        finish(1);
        return;
      }
      lastHeard = Date.now();
      for (const f of frames) {
        switch (f.t) {
          case 'launch': {
            const spec = f.spec as LaunchSpec;
            // Other nodes reach this one's data service at the address mprun reached us by.
            const log = (m: string): void => void process.stderr.write(`mprun agent on ${spec.node}: ${m}\n`);
            agent = new NodeAgent(spec, send, { secret, listen: { host: socket.localAddress ?? '127.0.0.1' }, log });
            agent.start().catch((e: unknown) => send({ t: 'failed', message: (e as Error).message }));
            break;
          }
          case 'stdin':
            agent?.stdin(f.data instanceof Uint8Array ? f.data : null);
            break;
          case 'abort':
            agent?.abort(String(f.reason), (f.signal as NodeJS.Signals) ?? 'SIGTERM');
            break;
          case 'signal':
            agent?.signal(f.signal as NodeJS.Signals);
            break;
          case 'done':
            finish(0);
            break;
        }
      }
    });
  });
}

function firstLine(stream: NodeJS.ReadableStream): Promise<string | null> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (d: Buffer | string): void => {
      text += d.toString();
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        stream.off('data', onData);
        stream.pause();
        resolve(text.slice(0, nl).trim());
      }
    };
    stream.on('data', onData);
    stream.once('end', () => resolve(null));
  });
}
