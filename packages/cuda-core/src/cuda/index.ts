export * from './memory.js';
export * from './ops.js';
