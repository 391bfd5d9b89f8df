// Cheap checks of kernel results that scale to any size: instead of recomputing C = A·B, compare
// C·t with A·(B·t) for a random vector t (O(n²) instead of O(n³)), as BLIS's tests do.
import { fillUniform } from './tensor.js';

/** Largest |C·t − A·(B·t)| relative to the magnitudes involved, for row-major A (m×k), B (k×n), C (m×n). */
export function gemmProjectionError(a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, seed = 7): number {
  const t = new Float64Array(n);
  fillUniform(t, seed, -1, 1);
  const bt = new Float64Array(k), btAbs = new Float64Array(k);
  for (let p = 0; p < k; p++) {
    let s = 0, sa = 0;
    for (let j = 0; j < n; j++) {
      const v = b[p * n + j] * t[j];
      s += v;
      sa += Math.abs(v);
    }
    bt[p] = s;
    btAbs[p] = sa;
  }
  let worst = 0;
  for (let i = 0; i < m; i++) {
    let expected = 0, scale = 0, got = 0;
    for (let p = 0; p < k; p++) {
      expected += a[i * k + p] * bt[p];
      scale += Math.abs(a[i * k + p]) * btAbs[p];
    }
    for (let j = 0; j < n; j++) got += c[i * n + j] * t[j];
    // fp32 accumulation over k terms: error grows like k·eps·Σ|a||b|; normalise by that scale.
    const err = Math.abs(got - expected) / (scale + 1e-30);
    if (!(err <= worst)) worst = Number.isNaN(err) ? Infinity : Math.max(worst, err);
  }
  return worst;
}

/** One output element of an NCHW convolution computed directly in float64. */
export function convOutputAt(
  x: Float32Array, w: Float32Array, p: { cIn: number; h: number; w: number; cOut: number; kh: number; kw: number; strideH: number; strideW: number; padH: number; padW: number; dilationH: number; dilationW: number; groups: number },
  n: number, co: number, oy: number, ox: number, bias?: Float32Array | null,
): number {
  const cPerGroup = p.cIn / p.groups, g = Math.floor(co / (p.cOut / p.groups));
  let acc = bias ? bias[co] : 0;
  for (let c = 0; c < cPerGroup; c++) {
    const ci = g * cPerGroup + c;
    for (let ky = 0; ky < p.kh; ky++) {
      const iy = oy * p.strideH - p.padH + ky * p.dilationH;
      if (iy < 0 || iy >= p.h) continue;
      for (let kx = 0; kx < p.kw; kx++) {
        const ix = ox * p.strideW - p.padW + kx * p.dilationW;
        if (ix < 0 || ix >= p.w) continue;
        acc += x[((n * p.cIn + ci) * p.h + iy) * p.w + ix] * w[((co * cPerGroup + c) * p.kh + ky) * p.kw + kx];
      }
    }
  }
  return acc;
}
