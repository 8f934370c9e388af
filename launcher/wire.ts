// Moved to core/wire.ts; this re-export goes once every importer points there.
export * from '../core/wire.js';
