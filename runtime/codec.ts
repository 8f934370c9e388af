// Moved to core/codec.ts (issue 11: core/ holds the leaf modules); this re-export goes once every importer points there.
export * from '../core/codec.js';
