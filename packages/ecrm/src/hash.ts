// Integer hashing shared by the data generator and the shards' deterministic initialisation (the
// shard processes import this without the nn module).
/** A 32-bit mix of two integers (splitmix-like), for seeds and per-row hidden weights. */
export function hash2(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}
