/**
 * A checkpointing app for the fault tests: every rank protects a pattern that
 * depends on (rank, epoch, index), checkpoints --epochs times, and on restart
 * checks that every word restored is the one of the epoch restore() names.
 * Options: --epochs K (4) --kib N (256, per rank) --async --hold-ms MS (pause
 * after each checkpoint: a window for the tests' faults) --grow-at E
 * --grow-kib M (from epoch E on, also protect M KiB more: a new pool generation)
 * --no-restore (checkpoint without restore(): the epochs go on after the
 * committed one; the data is then not checked by epoch) --wait (with --async:
 * checkpointWait() before finalize, and what it says).
 */
import { init } from 'mprun';

const opt = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
};
const EPOCHS = opt('epochs', 4);
const KIB = opt('kib', 256);
const HOLD = opt('hold-ms', 0);
const GROW_AT = opt('grow-at', -1);
const GROW_KIB = opt('grow-kib', 0);
const ASYNC = process.argv.includes('--async');
const NO_RESTORE = process.argv.includes('--no-restore');

const world = await init();
const state = new Uint32Array(KIB * 256);
const meta = new Float64Array(2);
world.protect('state', state);
world.protect('meta', meta);

const word = (epoch: number, i: number): number => (Math.imul(world.rank + 1, 2654435761) ^ Math.imul(epoch, 40503) ^ i) >>> 0;
const fill = (epoch: number): void => {
  for (let i = 0; i < state.length; i++) state[i] = word(epoch, i);
  meta[0] = epoch;
  meta[1] = world.rank;
};
const intact = (epoch: number): boolean => {
  if (meta[0] !== epoch || meta[1] !== world.rank) return false;
  for (let i = 0; i < state.length; i++) if (state[i] !== word(epoch, i)) return false;
  return true;
};

const restored = NO_RESTORE ? null : await world.restore();
if (restored !== null) {
  if (!intact(restored)) throw new Error(`rank ${world.rank}: epoch ${restored} restored wrong data`);
  console.log(`rank ${world.rank} restored epoch ${restored} intact`);
} else if (world.rank === 0) console.log('fresh start');

for (let epoch = (restored ?? 0) + 1; epoch <= EPOCHS; epoch++) {
  fill(epoch);
  if (epoch === GROW_AT) world.protect('grown', new Float64Array(GROW_KIB * 128).fill(epoch));
  const info = await world.checkpoint({ async: ASYNC });
  if (!NO_RESTORE && info.epoch !== epoch) throw new Error(`checkpoint returned epoch ${info.epoch}, expected ${epoch}`);
  if (world.rank === 0) console.log(`${ASYNC ? 'wrote' : 'committed'} epoch ${epoch} (${info.bytes} bytes) on ${info.replicas.join(' ')}`);
  if (HOLD > 0) await new Promise((r) => setTimeout(r, HOLD));
}
if (ASYNC && process.argv.includes('--wait')) {
  const w = await world.checkpointWait();
  if (world.rank === 0 && w !== null) console.log(`waited for epoch ${w.epoch} (${w.bytes} bytes) on ${w.replicas.join(' ')}`);
}
await world.finalize();
if (world.rank === 0) console.log('done');
