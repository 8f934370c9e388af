/**
 * The first module of a rank bundle (compile.ts): what rank-main.ts does
 * for a rank, run before the app's modules in the same file. Ties the rank's
 * life to its agent's (and its core, when bound), installs the rank's error
 * handlers, and maps stack traces through the bundle's source map when one
 * is printed (instead of Node's --enable-source-maps, which parses the map
 * at every start).
 */
import { native } from '../native/index.js';
import { prepareRank } from './rank.js';
import { mapStackTraces } from './stack-map.js';

mapStackTraces();
const parent = Number(process.env.MPRUN_PARENT_PID);
if (Number.isInteger(parent) && parent > 0) native().dieWithParent(parent);
const cpu = process.env.MPRUN_BIND_CPU;
if (cpu !== undefined && cpu !== '') native().setAffinity([Number(cpu)]);
prepareRank();
