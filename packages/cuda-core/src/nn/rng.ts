// A small seeded generator so weight init, shuffling and dropout masks are reproducible from one
// seed (tests and the CLI compare runs), independent of Math.random.

/** mulberry32: 32-bit state, fast, good enough for init and shuffling (not for cryptography). */
export class Rng {
  #state: number;
  #spare: number | null = null;

  constructor(seed = 1) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Standard normal (Box-Muller; the second value of each pair is kept for the next call). */
  normal(): number {
    if (this.#spare !== null) {
      const s = this.#spare;
      this.#spare = null;
      return s;
    }
    const u = 1 - this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Fisher-Yates shuffle in place. */
  shuffle<T extends { length: number; [i: number]: number }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }
}

// Layers built without an explicit generator draw from this one; manualSeed makes a whole model
// build reproducible, like torch.manual_seed.
let defaultRng = new Rng(0x5eed);

export function manualSeed(seed: number): void {
  defaultRng = new Rng(seed);
}

export function globalRng(): Rng {
  return defaultRng;
}
