/**
 * Misbehaving ranks for the exit-semantics tests, chosen by argv:
 *   code R C       rank R exits with code C (after init); the others wait in a barrier
 *   kill R         rank R SIGKILLs itself; the others wait in a barrier
 *   kill-sync R    the same, the others blocked in barrierSync
 *   nofinalize R   rank R exits 0 without finalize while the others wait
 *   abort R C      rank R calls world.abort(C)
 *   sleep          every rank sleeps (for --timeout and signal tests), printing its pid
 *   stdin          rank 0 echoes its stdin, upper-cased
 *   env NAME       every rank prints NAME's value
 *   lines          every rank prints two lines and one without a newline
 *   leave-child    rank 0 starts a child that keeps its stdout for 30 s, then exits
 */
import { spawn } from 'node:child_process';
import { init } from 'mprun';

const [mode, a, b] = process.argv.slice(2);
const world = await init();
const me = world.rank;
switch (mode) {
  case 'code':
    if (me === Number(a)) process.exit(Number(b));
    await world.barrier();
    break;
  case 'kill':
    if (me === Number(a)) process.kill(process.pid, 'SIGKILL');
    await world.barrier();
    break;
  case 'kill-sync':
    if (me === Number(a)) process.kill(process.pid, 'SIGKILL');
    world.barrierSync();
    break;
  case 'nofinalize':
    if (me === Number(a)) process.exit(0);
    await world.barrier();
    break;
  case 'abort':
    if (me === Number(a)) world.abort(Number(b), 'giving up');
    await world.barrier();
    break;
  case 'sleep':
    console.log(`pid ${process.pid}`);
    await new Promise((r) => setTimeout(r, 600_000));
    break;
  case 'stdin':
    if (me === 0) {
      let text = '';
      for await (const chunk of process.stdin) text += String(chunk);
      console.log(text.toUpperCase().trim());
    }
    break;
  case 'env':
    console.log(`${me}:${process.env[a!] ?? '<unset>'}`);
    break;
  case 'leave-child':
    if (me === 0) {
      const c = spawn('sleep', ['30'], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
      console.log(`child ${c.pid}`);
      c.unref();
    }
    break;
  case 'lines':
    process.stdout.write(`first ${me}\nsecond ${me}\nno newline ${me}`);
    break;
  default:
    throw new Error(`unknown mode ${mode}`);
}
await world.finalize();
