/**
 * The rank side of the checkpoint benchmark (bench/ckpt.ts runs it under
 * mprun): every rank protects its share of --mib MiB, then times, after an
 * untimed first checkpoint (it creates the pools):
 *   - --rounds synchronous checkpoints (call to durable commit);
 *   - --rounds asynchronous ones: the call (the application's stall) and the
 *     wait for its commit;
 *   - --rounds restores (read back, every chunk verified).
 * Rank 0 prints one JSON line of seconds per round.
 */
import { init } from 'mprun';

const opt = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
};
const MIB = opt('mib', 64);
const ROUNDS = opt('rounds', 3);

const world = await init();
const bytes = Math.floor((MIB * 1024 * 1024) / world.size / 8) * 8;
const state = new Float64Array(bytes / 8);
for (let i = 0; i < state.length; i++) state[i] = i * 0.5 + world.rank;
world.protect('state', state);

const time = async (f: () => Promise<unknown>): Promise<number> => {
  await world.barrier();
  const t0 = performance.now();
  await f();
  await world.barrier();
  return (performance.now() - t0) / 1000;
};

await world.checkpoint();
const sync: number[] = [];
for (let r = 0; r < ROUNDS; r++) sync.push(await time(() => world.checkpoint()));
const stall: number[] = [];
const asyncTotal: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  let s = 0;
  asyncTotal.push(
    await time(async () => {
      const t0 = performance.now();
      await world.checkpoint({ async: true });
      s = (performance.now() - t0) / 1000;
      await world.checkpointWait();
    }),
  );
  stall.push((await world.allreduce(new Float64Array([s]), 'max'))[0]!);
}
const restore: number[] = [];
for (let r = 0; r < ROUNDS; r++) restore.push(await time(() => world.restore()));
if (world.rank === 0) console.log(JSON.stringify({ bytes: bytes * world.size, sync, stall, asyncTotal, restore }));
await world.finalize();
