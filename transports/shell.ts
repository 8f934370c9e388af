// Moved to core/shell.ts; this re-export goes once every importer points there.
export * from '../core/shell.js';
