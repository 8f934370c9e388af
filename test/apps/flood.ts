/**
 * Every rank prints argv[2] lines (50,000 by default) to stdout and a few to
 * stderr, then finalizes and calls process.exit(0) at once: every byte written
 * before the exit must reach mprun's output.
 */
import { init } from 'mprun';

const world = await init();
const lines = Number(process.argv[2] ?? 50_000);
for (let i = 0; i < lines; i++) console.log(`rank ${world.rank} line ${i} ${'x'.repeat(40)}`);
for (let i = 0; i < 100; i++) console.error(`rank ${world.rank} err ${i}`);
await world.finalize();
process.exit(0);
