import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from './cli.js';

const here = 'package.json'; // any existing file stands in for the app

describe('mprun command line', () => {
  it('parses mpirun-style options and leaves the app its own arguments', () => {
    const o = parseArgs(['-np', '4', '-x', 'A=1', '--tag-output', '--timeout=30', '--bind-to', 'none', here, '-n', '9', '--flag']);
    expect(o).toMatchObject({ np: 4, env: { A: '1' }, tagOutput: true, timeoutSeconds: 30, bindTo: 'none', app: here, args: ['-n', '9', '--flag'] });
    expect(parseArgs(['--host', 'a:2,b:3', '--map-by', 'node', '--oversubscribe', '--launch-agent', 'ssh -p 2222', here])).toMatchObject({
      np: 5,
      hosts: [{ host: 'a', slots: 2 }, { host: 'b', slots: 3 }],
      mapBy: 'node',
      oversubscribe: true,
      launchAgent: 'ssh -p 2222',
    });
    expect(parseArgs(['--agent', '10.0.0.1:4000', '--node', '2'])).toEqual({ command: 'agent', address: '10.0.0.1:4000', node: 2 });
    expect(parseArgs(['-n', '2', '--', here])).toMatchObject({ np: 2, app: here, args: [] });
  });

  it('takes a checkpoint job and its targets (replicas), and refuses bad ones', () => {
    const o = parseArgs(['-n', '2', '--job', 'heat', '--ckpt-target', 'node2:/pools', '--ckpt-target', 'localhost', '--ckpt-target', 'u@node3:', here]);
    expect(o).toMatchObject({
      job: 'heat',
      ckptTargets: [
        { label: 'node2:/pools', host: 'node2', dir: '/pools' },
        { label: 'localhost', host: null, dir: '.mprun/checkpoints' },
        { label: 'u@node3:', host: 'u@node3', dir: '.mprun/checkpoints' },
      ],
    });
    expect(parseArgs([here])).toMatchObject({ job: null, ckptTargets: [] });
    // This machine's names run the daemon here, without ssh.
    expect(parseArgs(['--job', 'j', '--ckpt-target', '127.0.0.1:/p', '--ckpt-target', `${hostname()}:/q`, here])).toMatchObject({ ckptTargets: [{ host: null, dir: '/p' }, { host: null, dir: '/q' }] });
    expect(() => parseArgs(['--job', '../x', here])).toThrow(/--job takes a name/);
    expect(() => parseArgs(['--ckpt-target', ':/x', '--job', 'j', here])).toThrow(/HOST\[:DIR\]/);
    expect(() => parseArgs(['--ckpt-target', 'a', here])).toThrow(/--ckpt-target needs --job NAME/);
    expect(parseArgs(['checkpoints', 'list', '--job', 'x'])).toEqual({ command: 'checkpoints', argv: ['list', '--job', 'x'] });
  });

  it('knows the commands', () => {
    expect(parseArgs(['info'])).toEqual({ command: 'info' });
    expect(parseArgs(['--help'])).toEqual({ command: 'help' });
    expect(parseArgs(['-V'])).toEqual({ command: 'version' });
  });

  it('explains bad input', () => {
    expect(() => parseArgs(['-n', '0', here])).toThrow(UsageError);
    expect(() => parseArgs(['-n'])).toThrow(/needs a value/);
    expect(() => parseArgs(['--frobnicate', here])).toThrow(/unknown option --frobnicate/);
    expect(() => parseArgs(['-x', '1BAD', here])).toThrow(/-x takes VAR/);
    expect(() => parseArgs(['--timeout', '-1', here])).toThrow(/--timeout/);
    expect(() => parseArgs(['-n', '2'])).toThrow(/no program given/);
    expect(() => parseArgs(['-n', '2', 'missing.ts'])).toThrow(/missing.ts: no such file/);
    // A directory is not an app: a plain message, not Node's ERR_UNSUPPORTED_DIR_IMPORT stack.
    expect(() => parseArgs(['-n', '2', 'examples'])).toThrow(/examples is a directory; give the app's file \(such as examples\/index.ts\)/);
    expect(parseArgs(['--typecheck', here])).toMatchObject({ typecheck: true, app: here });
  });
});
