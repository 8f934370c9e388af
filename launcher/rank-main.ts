/**
 * The first module of every rank process mprun's agent starts: ties the
 * rank's life to its agent's (and its core, when bound), then runs the
 * (already compiled) app with the argv it expects.
 */
import { native } from '../native/index.js';
import { runAsRank } from './rank.js';

const [, , app, ...args] = process.argv;
if (app === undefined) {
  process.stderr.write('mprun rank-main: no app given\n');
  process.exit(2);
}
const parent = Number(process.env.MPRUN_PARENT_PID);
if (Number.isInteger(parent) && parent > 0) native().dieWithParent(parent);
const cpu = process.env.MPRUN_BIND_CPU;
if (cpu !== undefined && cpu !== '') native().setAffinity([Number(cpu)]);
await runAsRank(app, args);
