#!/bin/sh
":" /*; if [ -n "${NODE_EXTRA_CA_CERTS+set}" ]; then MPRUN_NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS; export MPRUN_NODE_EXTRA_CA_CERTS; unset NODE_EXTRA_CA_CERTS; fi; exec node "$0" "$@"; */
// The mprun command; the code lives in launcher/cli.ts (compiled to dist/). dist/mprun-cli.mjs
// is the same code in one file (launcher/bundle.ts), loaded when no module it holds is newer;
// when one is (tsc ran since), the modules are loaded and the bundle is made again in the background.
//
// This file is a shell script too (line 2; JavaScript reads a string and a comment there): run as
// a command, sh starts node on it without NODE_EXTRA_CA_CERTS. Node 20 parses the certificate file
// that names, and its own root certificates, as each process starts: 90 ms of CPU where it was
// measured (`node -e 0`: 120 ms with it, 30 without), before the first line, on the path of every
// job's start. mprun's own process makes no TLS connection; the variable goes back into its
// environment here, for what it starts (ranks drop it unless `-x NODE_EXTRA_CA_CERTS` passes it
// on: launcher/agent.ts). Only shell builtins: a PATH with node and sh alone runs it.
if (process.env.MPRUN_NODE_EXTRA_CA_CERTS !== undefined) {
  process.env.NODE_EXTRA_CA_CERTS = process.env.MPRUN_NODE_EXTRA_CA_CERTS;
  delete process.env.MPRUN_NODE_EXTRA_CA_CERTS;
}
if (typeof process.getBuiltinModule !== 'function') {
  process.stderr.write(`mprun: needs Node.js 20.16 or newer (process.getBuiltinModule); this is ${process.version}\n`);
  process.exit(1);
}
// Not \`import ... from 'node:fs'\`: the ES module facade of node:fs reads every export and loads the file streams.
const { readFileSync, statSync } = process.getBuiltinModule('node:fs');

const dist = new URL('../dist/', import.meta.url);

async function bundled() {
  try {
    const made = statSync(new URL('mprun-cli.mjs', dist)).mtimeMs;
    const { inputs } = JSON.parse(readFileSync(new URL('mprun-cli.json', dist), 'utf8'));
    const root = new URL('../', import.meta.url);
    if (inputs.every((p) => statSync(new URL(p, root)).mtimeMs <= made)) return new URL('mprun-cli.mjs', dist).href;
  } catch {
    // no bundle (yet), or an input is gone
  }
  try {
    const bundler = new URL('launcher/bundle.js', dist).pathname;
    const { spawn } = await import('node:child_process');
    spawn(process.execPath, [bundler, '--quiet'], { detached: true, stdio: 'ignore' }).on('error', () => undefined).unref();
  } catch {
    // bundling is an optimization only
  }
  return null;
}

const { main } = await import(process.env.MPRUN_NO_BUNDLE === '1' ? '../dist/launcher/cli.js' : ((await bundled()) ?? '../dist/launcher/cli.js'));
const code = await main(process.argv.slice(2));
// Flush what is pending on stdout/stderr, then leave (stdin may hold the loop open).
// null: this process is a rank (mprun --direct), which ends when its program does.
if (code !== null) process.stdout.write('', () => process.exit(code));
