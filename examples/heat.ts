/**
 * Heat diffusion on an N x N plate (Jacobi iterations), rows split across the
 * ranks, halos exchanged with send/recv, checkpointed every K steps.
 *
 *   npx mprun -n 8 --job heat examples/heat.ts --kill-at 250   # a rank is SIGKILLed: the job aborts
 *   npx mprun -n 8 --job heat examples/heat.ts --kill-at 250   # the same command resumes; same answer
 *
 * Options: --n N (512) --steps S (400) --every K (50) --async (checkpoints
 * in the background) --kill-at STEP (the last rank kills itself with SIGKILL
 * at STEP, on a fresh start only: what a crashed node looks like).
 */
import { init } from 'mprun';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
}

const world = await init();
const N = option('n', 512);
const STEPS = option('steps', 400);
const EVERY = option('every', 50);
const KILL_AT = option('kill-at', -1);
const ASYNC = process.argv.includes('--async');

// This rank's rows [lo, hi), with one halo row above and below.
const lo = Math.floor((N * world.rank) / world.size);
const hi = Math.floor((N * (world.rank + 1)) / world.size);
const rows = hi - lo;
let grid = new Float64Array((rows + 2) * N);
let next = new Float64Array((rows + 2) * N);
const step = new Int32Array(1);
// The top edge of the plate (row 0: rank 0's first row, after its halo) is held at 100 degrees.
if (world.rank === 0) grid.fill(100, N, 2 * N);
next.set(grid);

// Both grids are protected: after an odd number of swaps `grid` is the other array.
world.protect('a', grid);
world.protect('b', next);
world.protect('step', step);
const restored = await world.restore();
if (restored !== null) {
  if (step[0]! % 2 === 1) [grid, next] = [next, grid];
  if (world.rank === 0) console.log(`heat: resumed from epoch ${restored} (step ${step[0]})`);
}

const up = world.rank - 1;
const down = world.rank + 1;
const HALO = 7;
async function exchange(): Promise<void> {
  const pending: Promise<unknown>[] = [];
  if (up >= 0) {
    pending.push(world.send(up, grid.subarray(N, 2 * N), HALO));
    pending.push(world.recvInto(grid.subarray(0, N), up, HALO));
  }
  if (down < world.size) {
    pending.push(world.send(down, grid.subarray(rows * N, (rows + 1) * N), HALO));
    pending.push(world.recvInto(grid.subarray((rows + 1) * N, (rows + 2) * N), down, HALO));
  }
  await Promise.all(pending);
}

while (step[0]! < STEPS) {
  await exchange();
  for (let i = 1; i <= rows; i++) {
    const g = lo + i - 1;
    for (let j = 0; j < N; j++) {
      const k = i * N + j;
      // Plate edges keep their temperature.
      next[k] = g === 0 || g === N - 1 || j === 0 || j === N - 1 ? grid[k]! : 0.25 * (grid[k - N]! + grid[k + N]! + grid[k - 1]! + grid[k + 1]!);
    }
  }
  [grid, next] = [next, grid];
  step[0]!++;
  if (step[0]! === KILL_AT && restored === null && world.rank === world.size - 1) {
    console.log(`heat: rank ${world.rank} kills itself with SIGKILL at step ${step[0]}`);
    process.kill(process.pid, 'SIGKILL');
  }
  if (step[0]! % EVERY === 0 || step[0] === STEPS) {
    const info = await world.checkpoint({ async: ASYNC });
    if (world.rank === 0) console.log(`heat: step ${step[0]}: checkpoint epoch ${info.epoch}, ${(info.bytes / 1048576).toFixed(1)} MiB${ASYNC ? ' (async)' : ''}, ${(info.seconds * 1000).toFixed(1)} ms`);
  }
}

let local = 0;
for (let i = 1; i <= rows; i++) for (let j = 0; j < N; j++) local += grid[i * N + j]!;
const sum = await world.allreduce(local, 'sum');
if (world.rank === 0) console.log(`heat: ${N}x${N}, ${STEPS} steps, ${world.size} ranks: sum = ${sum.toPrecision(17)}`);
await world.finalize();
