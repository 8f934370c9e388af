/**
 * Messages larger than one DSM frame (16 MiB) to a rank on another node, both
 * ways at once: every rank sends 40 MiB + 3 float64s and 17 MiB of bytes to
 * its partner, then checks every element it received.
 */
import { init } from 'mprun';

const world = await init();
const partner = (world.rank + world.size / 2) % world.size;
const doubles = (5 << 20) + 3;
const bytes = 17 << 20;
const f64 = new Float64Array(doubles);
for (let i = 0; i < doubles; i++) f64[i] = world.rank * 1e7 + i;
const u8 = new Uint8Array(bytes);
for (let i = 0; i < bytes; i++) u8[i] = (i * 7 + world.rank) & 255;
const sends = [world.send(partner, f64, 1), world.send(partner, u8, 2)];
const gotF64 = await world.recv<Float64Array>(partner, 1);
const gotU8 = await world.recv<Uint8Array>(partner, 2);
await Promise.all(sends);
let bad = gotF64.data.length === doubles && gotU8.data.length === bytes ? -1 : 0;
for (let i = 0; bad < 0 && i < doubles; i++) if (gotF64.data[i] !== partner * 1e7 + i) bad = i;
for (let i = 0; bad < 0 && i < bytes; i++) if (gotU8.data[i] !== ((i * 7 + partner) & 255)) bad = i;
console.log(bad < 0 ? `bigmsg ok ${world.rank}` : `bigmsg BAD ${world.rank} at ${bad}: ${gotF64.data.length} doubles, ${gotU8.data.length} bytes`);
await world.finalize();
