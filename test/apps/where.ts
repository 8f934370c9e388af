/** Prints where a rank runs, without joining the world (the launcher alone). */
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';

const e = process.env;
const mode = process.argv[2] ?? 'print';
console.log(`rank ${e.MPRUN_RANK} of ${e.MPRUN_SIZE} on ${hostname()} (node ${e.MPRUN_NODE_NAME}, local ${e.MPRUN_LOCAL_RANK} of ${e.MPRUN_LOCAL_SIZE}) shm-probe=${existsSync('/dev/shm/mprun-cluster-probe')}`);
if (mode === 'fail' && e.MPRUN_RANK === process.argv[3]) process.exit(Number(process.argv[4]));
// What the job's configuration reached this rank with: mprun's MPRUN_* settings, its Node.js flags.
if (mode === 'env') console.log(`rank ${e.MPRUN_RANK} spin=${e.MPRUN_SPIN_US} reproducible=${e.MPRUN_COLL_REPRODUCIBLE} other=${e.MPRUN_NOT_A_SETTING} flags=${process.execArgv.join(' ')}`);
if (mode === 'sleep') {
  console.log(`pid ${process.pid}`);
  await new Promise((r) => setTimeout(r, 600_000));
}
