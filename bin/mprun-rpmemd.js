#!/usr/bin/env node
// The rpmem target daemon (like PMDK's rpmemd); the code lives in transports/rpmem/daemon-main.ts.
import { main } from '../dist/transports/rpmem/daemon-main.js';

const code = await main(process.argv.slice(2));
process.stdout.write('', () => process.exit(code));
