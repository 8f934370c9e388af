#!/usr/bin/env node
// The mprun command; the code lives in launcher/cli.ts (compiled to dist/).
import { main } from '../dist/launcher/cli.js';

const code = await main(process.argv.slice(2));
// Flush what is pending on stdout/stderr, then leave (stdin may hold the loop open).
// null: this process is a rank (mprun --direct), which ends when its program does.
if (code !== null) process.stdout.write('', () => process.exit(code));
