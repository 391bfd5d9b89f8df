export * from './memory.js';
export * from './ops.js';
export * from './abft.js';
