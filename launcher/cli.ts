/**
 * The `mprun` command.
 *   mprun -n N [options] app.ts|app.js [args...]
 *   mprun info
 */
import { cpus } from 'node:os';
import { statSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { compileApp, needsCompile } from './compile.js';
import { runAsRank } from './rank.js';
import { makeJobDir, removeJobDir } from './tmpdirs.js';
import { agentMain } from './agent.js';
import { spawnSync } from 'node:child_process';
import { HostError, parseHostList, readHostfile, slurmAllocation } from './hosts.js';
import { infoText, packageVersion } from './info.js';
import { runJob, type JobOptions } from './job.js';
import { checkJobName, DEFAULT_POOL_DIR, parseCheckpointTarget } from './ckpt.js';
import { checkpointsMain } from './checkpoints.js';
import { watchOutput } from './stdio.js';
import { typecheckApp, TypecheckUnavailable } from './typecheck.js';

const USAGE = `Usage: mprun [options] app.ts|app.js [app args...]
       mprun info
       mprun checkpoints list|verify|remove --job NAME [--ckpt-target HOST[:DIR]]...

Starts N ranks of a TypeScript or JavaScript program (a .ts app is compiled
once per job). Every rank calls \`await init()\` from 'mprun'.

Options:
  -n, -np, --np N      number of ranks (default: the slots of --host/--hostfile,
                       else the number of cores, ${cpus().length})
  -x VAR[=value]       export VAR to every rank (its value here, or the one given);
                       ranks start without NODE_EXTRA_CA_CERTS unless it is exported so
  --tag-output         prefix each output line with [job,rank]<stdout|stderr>:
  --timeout SECONDS    stop the job (exit code 124) when it runs longer, saying
                       where each rank waits (operation, peer or team, tag, the
                       program's line); SIGUSR1 to mprun prints that at any time
  --report-hangs S     print where the ranks wait once every rank has been
                       blocked for S seconds (a likely deadlock); the job goes on
  --bind-to core|none  bind each rank to a core (default: core when ranks <= cores)
  --net ucx|tcp|auto   the network between nodes: UCX (RDMA at a site; its TCP
                       here), mprun's own TCP through the node agents (the
                       default), or auto (UCX when libucp is usable, else tcp)
  --host H[:N],...     run on these nodes, N slots each (default 1)
  --hostfile FILE      nodes from an Open MPI hostfile ("node slots=N" lines)
  --map-by slot|node   fill each node in turn (slot, the default) or round-robin (node)
  --oversubscribe      allow more ranks than the nodes' slots
  --launch-agent CMD   start node agents with CMD instead of ssh (ssh gets
                       -T -oBatchMode=yes and $MPRUN_SSH_ARGS)
  --controller-address ADDR  listen for the nodes there (default: the address
                       on the route to the first node)
  --job NAME           the job's checkpoints: world.restore() resumes from the
                       newest committed epoch of NAME; running the same
                       command again after a failure resumes it
  --ckpt-target HOST[:DIR]  where checkpoints go (repeatable: replicas). HOST is
                       reached with ssh (or $RPMEM_SSH); DIR defaults to
                       ~/${DEFAULT_POOL_DIR}. Default: localhost, daemon run by mprun.
                       A named DIR must exist (or add --ckpt-mkdir)
  --ckpt-mkdir         create missing --ckpt-target directories with parents
  --typecheck          type-check the app with TypeScript (tsc --noEmit, the
                       project's tsconfig.json) before any rank starts; without
                       it a .ts app runs unchecked (esbuild strips types)
  -h, --help           this text
  -V, --version        the version of mprun

Exit code: that of the lowest rank that failed; a rank that dies aborts the
whole job. Ctrl-C and SIGTERM reach every rank, then SIGKILL after
MPRUN_KILL_GRACE_MS. See \`mprun info\` for transports and configuration.
`;

export class UsageError extends Error {}

function expandSlurmNodes(list: string): string[] {
  const r = spawnSync('scontrol', ['show', 'hostnames', list], { encoding: 'utf8' });
  if (r.status !== 0) throw new HostError(`scontrol cannot expand the node list '${list}': ${r.stderr ?? r.error?.message}`);
  return r.stdout.split('\n').filter((l) => l !== '');
}

export type Command = { command: 'help' | 'version' | 'info' } | { command: 'agent'; address: string; node: number } | { command: 'checkpoints'; argv: readonly string[] } | { command: 'direct'; app: string; args: readonly string[] };

/** The job, and what the command line asks of mprun before it starts. */
export interface CliJob extends JobOptions {
  /** --typecheck: tsc --noEmit over the app first. */
  typecheck: boolean;
}

/** A positive number given to `flag`, or a usage error naming it and `what` it counts. */
function positive(flag: string, v: string, what: string, integer = false): number {
  const n = Number(v);
  if (!(n > 0) || (integer && !Number.isInteger(n))) throw new UsageError(`${flag} takes a positive ${what}, not '${v}'`);
  return n;
}

/** What the job options start as, before the command line. */
function defaultJob(): CliJob & { ckptMkdir: boolean } {
  return {
    typecheck: false,
    np: -1,
    app: '',
    args: [],
    env: {},
    tagOutput: false,
    timeoutSeconds: null,
    reportHangsSeconds: null,
    bindTo: 'auto',
    hosts: null,
    mapBy: 'slot',
    oversubscribe: false,
    launchAgent: null,
    controllerAddress: null,
    slurm: false,
    job: null,
    ckptTargets: [],
    ckptMkdir: false,
  };
}

type Parsing = ReturnType<typeof defaultJob>;
/** An option: whether it takes a value, and what it does (a Command ends the parsing: --help, --version). */
type OptionRule = { value: true; apply(o: Parsing, v: string, flag: string): void } | { value: false; apply(o: Parsing, flag: string): void | Command };

const OPTIONS: Record<string, OptionRule> = {
  '-n': { value: true, apply: (o, v, flag) => void (o.np = positive(flag, v, 'number of ranks', true)) },
  '-x': {
    value: true,
    apply: (o, v) => {
      const k = v.indexOf('=');
      const name = k < 0 ? v : v.slice(0, k);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`-x takes VAR or VAR=value, not '${v}'`);
      if (k >= 0) o.env[name] = v.slice(k + 1);
      else if (process.env[name] !== undefined) o.env[name] = process.env[name]!;
    },
  },
  '--tag-output': { value: false, apply: (o) => void (o.tagOutput = true) },
  '--net': {
    value: true,
    apply: (o, v) => {
      if (v !== 'ucx' && v !== 'tcp' && v !== 'auto') throw new UsageError(`--net takes ucx, tcp or auto, not '${v}'`);
      o.env.MPRUN_NET = v;
    },
  },
  '--timeout': { value: true, apply: (o, v, flag) => void (o.timeoutSeconds = positive(flag, v, 'number of seconds')) },
  '--report-hangs': { value: true, apply: (o, v, flag) => void (o.reportHangsSeconds = positive(flag, v, 'number of seconds')) },
  '--bind-to': {
    value: true,
    apply: (o, v) => {
      if (v !== 'core' && v !== 'none') throw new UsageError(`--bind-to takes core or none, not '${v}'`);
      o.bindTo = v;
    },
  },
  '--host': { value: true, apply: (o, v) => void (o.hosts = [...(o.hosts ?? []), ...parseHostList(v)]) },
  // Ignore a surrounding Slurm allocation (run locally, or on --host).
  '--no-slurm': { value: false, apply: () => void delete process.env.SLURM_JOB_ID },
  '--hostfile': { value: true, apply: (o, v) => void (o.hosts = [...(o.hosts ?? []), ...readHostfile(v)]) },
  '--map-by': {
    value: true,
    apply: (o, v) => {
      if (v !== 'slot' && v !== 'node' && v !== 'core') throw new UsageError(`--map-by takes slot or node, not '${v}'`);
      o.mapBy = v === 'node' ? 'node' : 'slot';
    },
  },
  '--oversubscribe': { value: false, apply: (o) => void (o.oversubscribe = true) },
  '--launch-agent': { value: true, apply: (o, v) => void (o.launchAgent = v) },
  '--controller-address': { value: true, apply: (o, v) => void (o.controllerAddress = v) },
  '--job': { value: true, apply: (o, v) => void (o.job = asUsage(() => checkJobName(v))) },
  '--ckpt-target': { value: true, apply: (o, v) => void o.ckptTargets.push(asUsage(() => parseCheckpointTarget(v))) },
  '--ckpt-mkdir': { value: false, apply: (o) => void (o.ckptMkdir = true) },
  '--typecheck': { value: false, apply: (o) => void (o.typecheck = true) },
  '--help': { value: false, apply: () => ({ command: 'help' }) },
  '--version': { value: false, apply: () => ({ command: 'version' }) },
};
for (const [alias, name] of [['-np', '-n'], ['--np', '-n'], ['--n', '-n'], ['--machinefile', '--hostfile'], ['-h', '--help'], ['-V', '--version']] as const) OPTIONS[alias] = OPTIONS[name]!;

/** Runs `f`, turning its error into a usage error (bad values of options). */
function asUsage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function parseArgs(argv: readonly string[]): CliJob | Command {
  if (argv[0] === '--agent') {
    // Under srun, every node's agent has the same command line: its index is SLURM_NODEID.
    const node = Number(argv[3] === 'slurm' ? process.env.SLURM_NODEID : argv[3]);
    if (argv[2] !== '--node' || !Number.isInteger(node) || node < 0 || argv[1] === undefined) throw new UsageError('usage: mprun --agent HOST:PORT --node INDEX|slurm (started by mprun itself)');
    return { command: 'agent', address: argv[1], node };
  }
  if (argv[0] === 'info') return { command: 'info' };
  if (argv[0] === '--direct') {
    // This process is a rank of a job a PMIx server started (srun --mpi=pmix, mpirun).
    const app = argv[1];
    if (app === undefined) throw new UsageError('usage: mprun --direct app.ts [args] (one rank, started by srun --mpi=pmix or mpirun)');
    checkApp(app);
    return { command: 'direct', app, args: argv.slice(2) };
  }
  if (argv[0] === 'checkpoints') return { command: 'checkpoints', argv: argv.slice(1) };
  const o = defaultJob();
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    const eq = a.indexOf('=');
    const [flag, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const rule = OPTIONS[flag];
    if (rule === undefined) throw new UsageError(`unknown option ${a} (see mprun --help)`);
    if (rule.value) {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      rule.apply(o, v, flag);
    } else {
      const command = rule.apply(o, flag);
      if (command !== undefined) return command;
    }
  }
  const app = argv[i];
  if (app === undefined) throw new UsageError('no program given (see mprun --help)');
  if (o.ckptTargets.length > 0 && o.job === null) throw new UsageError('--ckpt-target needs --job NAME (the checkpoints are the job\'s)');
  const { ckptMkdir, ...opts } = o;
  if (ckptMkdir) for (const t of opts.ckptTargets) t.mkdir = true;
  if (opts.hosts === null) {
    // Inside a Slurm allocation, plain `mprun app` runs on it (srun starts the agents).
    opts.hosts = slurmAllocation(process.env, expandSlurmNodes);
    if (opts.hosts !== null) opts.slurm = true;
  }
  if (opts.np < 0) opts.np = opts.hosts !== null ? opts.hosts.reduce((a, h) => a + h.slots, 0) : cpus().length;
  opts.app = app;
  opts.args = argv.slice(i + 1);
  checkApp(app);
  return opts;
}

/** The app must be a file mprun can run: say so plainly rather than let Node fail with a stack. */
function checkApp(app: string): void {
  let st;
  try {
    st = statSync(app);
  } catch {
    throw new UsageError(`${app}: no such file (the app is a .ts, .mts, .js or .mjs file)`);
  }
  if (st.isDirectory()) throw new UsageError(`${app} is a directory; give the app's file (such as ${join(app, 'index.ts')})`);
  if (!st.isFile()) throw new UsageError(`${app} is not a regular file`);
}

/**
 * `mprun --direct app.ts`: compiles the app (a .ts one) into a private
 * folder and runs it in this process as a rank that bootstraps from the PMIx
 * server that started it. Resolves once the program's module has run (null:
 * the process then ends by itself, after the program's last callbacks and
 * finalize).
 */
async function runDirect(app: string, args: readonly string[]): Promise<null> {
  let path = resolvePath(app);
  if (needsCompile(path)) {
    const dir = makeJobDir();
    process.once('exit', () => removeJobDir(dir));
    path = await compileApp(path, dir);
  }
  await runAsRank(path, args);
  return null;
}

/** mprun's exit code, or null when the process ends by itself (a rank run with --direct). */
export async function main(argv: readonly string[]): Promise<number | null> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError || e instanceof HostError) {
      process.stderr.write(`mprun: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if ('command' in parsed) {
    if (parsed.command === 'agent') return agentMain(parsed.address, parsed.node);
    if (parsed.command === 'direct') return runDirect(parsed.app, parsed.args);
    // `mprun checkpoints list | head`: the command finishes (its daemons stopped) and exits 141, quietly.
    let closed = false;
    const unwatch = watchOutput(() => (closed = true));
    let code = 0;
    if (parsed.command === 'checkpoints') code = await checkpointsMain(parsed.argv);
    else if (parsed.command === 'help') process.stdout.write(USAGE);
    else if (parsed.command === 'version') process.stdout.write(`mprun ${packageVersion()}\n`);
    else process.stdout.write(infoText());
    // A failed write reports its error a tick after its callback: wait for both.
    await new Promise<void>((resolve) => process.stdout.write('', () => setImmediate(resolve)));
    unwatch();
    return closed ? 128 + 13 : code;
  }
  if (parsed.typecheck) {
    try {
      const r = await typecheckApp(parsed.app, process.stderr.isTTY === true);
      if (r.text !== '') process.stderr.write(r.text.endsWith('\n') ? r.text : `${r.text}\n`);
      if (r.errors > 0) {
        process.stderr.write(`mprun: ${parsed.app}: ${r.errors} type error(s); no rank started\n`);
        return 1;
      }
    } catch (e) {
      process.stderr.write(`mprun: ${(e as Error).message}\n`);
      return e instanceof TypecheckUnavailable ? 2 : 1;
    }
  }
  try {
    return await runJob(parsed);
  } catch (e) {
    process.stderr.write(`mprun: ${(e as Error).message}\n`);
    return e instanceof HostError ? 2 : 1;
  }
}
