/** `mprun info`: what this build can do on this machine, like ompi_info / ucx_info -d. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { native, nativeError, nativePath, packageRoot } from '../native/index.js';
import { DEFAULT_POOL_DIR } from './ckpt.js';
import { CONFIG_FIELDS } from '../runtime/config.js';
import { TRANSPORTS } from '../transports/registry.js';
import { backendName, backends, version as xpmemVersion } from '../transports/xpmem/index.js';
import { ucxInfoRows } from '../transports/ucx/index.js';

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

function fmtBandwidth(bps: number): string {
  return `${(bps / 1e9).toFixed(1)} GB/s`;
}

export function infoText(): string {
  // The environment as given: querying the transports loads UCX, which sets its defaults in it.
  const given = { ...process.env };
  const out: string[] = [];
  const row = (k: string, v: string): void => void out.push(`${k.padStart(24)}: ${v}`);
  row('mprun', packageVersion());
  row('node', process.version);
  row('host', `${hostname()} (${cpus().length} cores)`);
  row('native addon', nativeError === null ? `loaded from ${nativePath}` : `NOT AVAILABLE: ${nativeError}`);
  out.push('');
  out.push('Transports:');
  for (const t of TRANSPORTS) {
    const q = t.query();
    const c = q.caps;
    const what = c === null ? '' : `; latency ${(c.latency * 1e6).toFixed(2)} us, bandwidth ${fmtBandwidth(c.bandwidth)}, map ${c.canMap ? 'yes' : 'no'}, atomics ${c.atomics ? 'yes' : 'no'}, puts complete ${c.putCompleteOnReturn ? 'on return' : 'at quiet'}, gets/atomics ${c.progressWithoutTarget ? 'without the target' : 'need the target to progress'}`;
    row(t.name, `${q.detail}; reaches ${t.scope}${what}`);
  }
  out.push('');
  out.push('Launchers:');
  const has = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
  row('local', 'available; the agent runs inside mprun (no --host, no Slurm allocation)');
  row('ssh', has('ssh') ? 'available; --host/--hostfile start `mprun --agent` with ssh -T -oBatchMode=yes ($MPRUN_SSH_ARGS), or --launch-agent CMD' : 'unavailable: no ssh in PATH (--launch-agent CMD still works)');
  row('slurm', process.env.SLURM_JOB_ID !== undefined ? `in allocation ${process.env.SLURM_JOB_ID} (${process.env.SLURM_JOB_NODELIST ?? '?'}): plain mprun runs on it with srun` : has('srun') ? 'available inside an allocation (salloc/sbatch); not in one now' : 'unavailable: no srun in PATH');
  out.push('');
  out.push('UCX (transports/ucx; select with --net ucx):');
  for (const [k, v] of ucxInfoRows(given)) row(k, v);
  out.push('');
  out.push('Checkpoints (rpmem):');
  const pmem = nativeError === null ? native().pmemInfo() : { libpmem: false, reason: 'no native addon' };
  row('target daemon', `${join(packageRoot, 'bin', 'mprun-rpmemd.js')} (started per job over ssh, $RPMEM_SSH, or locally; RPMEM_CMD replaces it)`);
  row('persistence', pmem.libpmem ? 'libpmem (pmem_map_file; pmem_persist on pmem, pmem_msync otherwise)' : `msync (libpmem not loaded: ${pmem.reason}; apt-get install libpmem1)`);
  row('default target', `local:${join(homedir(), DEFAULT_POOL_DIR)} (mprun --job NAME; --ckpt-target HOST[:DIR] for others)`);
  out.push('');
  out.push('XPMEM backends (best first):');
  const chosen = backendName();
  for (const b of backends()) {
    row(b.name, `${b.available ? 'available' : 'unavailable'}${b.name === chosen ? ' [in use]' : ''}; ${b.canMap ? 'maps memory (loads/stores)' : 'copies only'}; ${b.reason}`);
  }
  if (chosen !== null) row('interface version', `0x${xpmemVersion().toString(16)}`);
  out.push('');
  out.push('Configuration (environment; forward with mprun -x VAR=value):');
  for (const f of CONFIG_FIELDS) {
    const cur = process.env[f.name];
    row(f.name, `${cur !== undefined && cur !== '' ? cur : f.default}${cur !== undefined && cur !== '' ? ' (set)' : ' (default)'}  ${f.help}`);
  }
  return out.join('\n') + '\n';
}
