// Degraded-mode evaluation on a real test set: the accuracy of the predictions a code reconstructs
// when some of the k are unavailable (argmax of the decoded output vs the true label), beside the
// deployed model's own accuracy and the trivial default prediction.
import type { ImageDataset, Module } from '@kintsugi/cuda-core/nn';
import { Rng } from '@kintsugi/cuda-core/nn';

import { BerrutCode, LearnedDecoder } from './berrut.js';
import type { ParityCode } from './codes.js';
import { argmaxRows, forwardAll, gather, rows, type InputSpec } from './data.js';

export interface TestOutputs {
  /** Normalised test images [n, C·H·W] and the deployed model's logits [n, classes]. */
  x: Float32Array;
  y: Float32Array;
  labels: Uint8Array;
  classes: number;
  shape: [number, number, number];
  deployedAccuracy: number;
}

export async function deployedOutputs(deployed: Module, test: ImageDataset, input: InputSpec): Promise<TestOutputs> {
  const idx = Int32Array.from({ length: test.count }, (_, i) => i);
  const x = gather(test, idx, input);
  const y = await forwardAll(deployed, x, input.shape);
  const classes = y.length / test.count;
  const pred = argmaxRows(y, classes);
  let correct = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === test.labels[i]) correct++;
  return { x, y, labels: test.labels, classes, shape: input.shape, deployedAccuracy: correct / test.count };
}

/** Seeded random k-groups over the test set: k arrays of member indices, group g = [a[0][g], …]. */
export function testGroups(n: number, k: number, seed = 1): Int32Array[] {
  const perm = new Rng(seed).shuffle(Int32Array.from({ length: n }, (_, i) => i));
  const g = Math.floor(n / k);
  return Array.from({ length: k }, (_, m) => Int32Array.from({ length: g }, (_, i) => perm[i * k + m]));
}

export interface ParmResult {
  k: number;
  /** Lost predictions per group in this row. */
  lost: number;
  /** Reconstructed predictions that match the true label. */
  accuracy: number;
  /** Reconstructed predictions that match the deployed model's own prediction. */
  agreement: number;
  reconstructed: number;
}

/**
 * ParM degraded mode: for every test group and every set of `lost` members (every member for one
 * loss, every pair for two with r = 2), the lost predictions are decoded from the parity models'
 * outputs and the deployed outputs of the rest.
 */
export async function evaluateParm(t: TestOutputs, code: ParityCode, parities: (Module | null)[], options: { seed?: number; maxLost?: number } = {}): Promise<ParmResult[]> {
  const k = code.k, c = t.classes;
  const px = t.shape[0] * t.shape[1] * t.shape[2];
  const groups = testGroups(t.labels.length, k, options.seed ?? 1);
  const members = groups.map((g) => rows(t.x, px, g));
  const outputs = groups.map((g) => rows(t.y, c, g));
  // A missing parity file leaves its row out (fewer losses are then recoverable).
  const parityOutputs: (Float32Array | null)[] = [];
  for (let p = 0; p < code.r; p++) {
    const m = parities[p];
    parityOutputs.push(m ? await forwardAll(m, await code.encode(members, p, t.shape), code.queryShape(t.shape)) : null);
  }
  const available = parityOutputs.filter((p) => p !== null).length;
  const results: ParmResult[] = [];
  for (let lost = 1; lost <= Math.min(available, options.maxLost ?? code.r); lost++) {
    let correct = 0, agree = 0, total = 0;
    for (const set of combinations(k, lost)) {
      const decoded = await code.decode(parityOutputs, outputs.map((o, i) => (set.includes(i) ? null : o)));
      for (const m of set) {
        const pred = argmaxRows(decoded[m], c);
        const own = argmaxRows(outputs[m], c);
        for (let g = 0; g < pred.length; g++) {
          if (pred[g] === t.labels[groups[m][g]]) correct++;
          if (pred[g] === own[g]) agree++;
          total++;
        }
      }
    }
    results.push({ k, lost, accuracy: correct / total, agreement: agree / total, reconstructed: total });
  }
  return results;
}

export interface BerrutResult {
  k: number;
  stragglers: number;
  systematic: boolean;
  /** 'berrut': Berrut interpolation; 'learned': least-squares weights fitted on training images. */
  decoder: 'berrut' | 'learned';
  /** Accuracy of all k predictions per group (returned or interpolated), averaged over the straggler patterns. */
  accuracy: number;
  agreement: number;
  /**
   * Accuracy of the interpolated predictions only: for a systematic code those whose own query
   * straggled; for the non-systematic code every prediction is interpolated (= accuracy).
   */
  lostAccuracy: number;
  lost: number;
  patterns: number;
  reconstructed: number;
}

/** The seeded k-groups of a set of images and the deployed model's outputs on their N coded queries. */
async function berrutOutputs(t: TestOutputs, deployed: Module, code: BerrutCode, seed: number): Promise<{ groups: Int32Array[]; outs: Float32Array[] }> {
  const px = t.shape[0] * t.shape[1] * t.shape[2];
  const groups = testGroups(t.labels.length, code.k, seed);
  const coded = code.encode(groups.map((g) => rows(t.x, px, g)));
  const outs: Float32Array[] = [];
  // A systematic code's first k queries are the images themselves: their outputs are known.
  for (let i = 0; i < coded.length; i++) outs.push(code.systematic && i < code.k ? rows(t.y, t.classes, groups[i]) : await forwardAll(deployed, coded[i], t.shape));
  return { groups, outs };
}

/**
 * The Berrut code (ApproxIFER): every group of k test images becomes N = k + s coded queries run
 * on the deployed model; with s of them missing, all k predictions are interpolated from the rest.
 * Averaged over every straggler pattern (or `maxPatterns` seeded random ones when there are more).
 * With `fit` (the deployed outputs of training images), the decoder is a LearnedDecoder fitted on
 * their groups instead of Berrut interpolation.
 */
export async function evaluateBerrut(t: TestOutputs, deployed: Module, k: number, s: number, options: { seed?: number; maxPatterns?: number; systematic?: boolean; fit?: TestOutputs } = {}): Promise<BerrutResult> {
  const code = new BerrutCode(k, s, { systematic: options.systematic });
  const c = t.classes;
  const seed = options.seed ?? 1;
  const { groups, outs } = await berrutOutputs(t, deployed, code, seed);
  let decoder: { decode(o: (Float32Array | null)[]): Float32Array[] } = code;
  if (options.fit) {
    const f = options.fit;
    const fitted = await berrutOutputs(f, deployed, code, seed + 1);
    decoder = new LearnedDecoder(code, fitted.outs, fitted.groups.map((g) => rows(f.y, f.classes, g)));
  }
  const all = combinations(code.n, s);
  const maxPatterns = options.maxPatterns ?? 64;
  const patterns = all.length <= maxPatterns
    ? all
    : Array.from(new Rng(seed + 7).shuffle(Int32Array.from({ length: all.length }, (_, i) => i)).subarray(0, maxPatterns), (i) => all[i]);
  const own = groups.map((g) => argmaxRows(rows(t.y, c, g), c));
  let correct = 0, agree = 0, total = 0, lostCorrect = 0, lost = 0;
  for (const drop of patterns) {
    const decoded = decoder.decode(outs.map((o, i) => (drop.includes(i) ? null : o)));
    for (let j = 0; j < k; j++) {
      const interpolated = !code.systematic || drop.includes(j);
      // A returned prediction of a systematic code is the deployed output itself, whatever the decoder.
      const pred = argmaxRows(interpolated ? decoded[j] : outs[j], c);
      for (let g = 0; g < pred.length; g++) {
        const hit = pred[g] === t.labels[groups[j][g]];
        if (hit) correct++;
        if (pred[g] === own[j][g]) agree++;
        total++;
        if (interpolated) {
          lost++;
          if (hit) lostCorrect++;
        }
      }
    }
  }
  return { k, stragglers: s, systematic: code.systematic, decoder: options.fit ? 'learned' : 'berrut', accuracy: correct / total, agreement: agree / total, lostAccuracy: lost ? lostCorrect / lost : NaN, lost, patterns: patterns.length, reconstructed: total };
}

/** All subsets of {0..n−1} of the given size, in lexicographic order. */
export function combinations(n: number, size: number): number[][] {
  const out: number[][] = [];
  const rec = (start: number, cur: number[]) => {
    if (cur.length === size) {
      out.push(cur.slice());
      return;
    }
    for (let i = start; i < n; i++) rec(i + 1, [...cur, i]);
  };
  rec(0, []);
  return out;
}
