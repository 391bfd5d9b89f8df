// Naive references in float64 for the kernel tests.
import { convOutputAt } from '../src/verify.js';

export function gemmRef(a: ArrayLike<number>, b: ArrayLike<number>, m: number, n: number, k: number, opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number; c?: ArrayLike<number> } = {}): Float64Array {
  const { transA = false, transB = false, alpha = 1, beta = 0, c } = opts;
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
      out[i * n + j] = alpha * s + (beta !== 0 && c ? beta * c[i * n + j] : 0);
    }
  return out;
}

export interface ConvShape { n: number; cIn: number; h: number; w: number; cOut: number; kh: number; kw: number; strideH: number; strideW: number; padH: number; padW: number; dilationH: number; dilationW: number; groups: number; outH: number; outW: number }

export function convRef(x: Float32Array, w: Float32Array, bias: Float32Array | null, p: ConvShape): Float64Array {
  const y = new Float64Array(p.n * p.cOut * p.outH * p.outW);
  let i = 0;
  for (let n = 0; n < p.n; n++)
    for (let co = 0; co < p.cOut; co++)
      for (let oy = 0; oy < p.outH; oy++) for (let ox = 0; ox < p.outW; ox++) y[i++] = convOutputAt(x, w, p, n, co, oy, ox, bias);
  return y;
}

// Gradients by the chain rule through convRef's index map (direct loops).
export function convBackwardRef(x: Float32Array, w: Float32Array, dy: Float32Array, p: ConvShape) {
  const dx = new Float64Array(x.length), dw = new Float64Array(w.length), db = new Float64Array(p.cOut);
  const cpg = p.cIn / p.groups, opg = p.cOut / p.groups;
  for (let n = 0; n < p.n; n++)
    for (let co = 0; co < p.cOut; co++) {
      const g = Math.floor(co / opg);
      for (let oy = 0; oy < p.outH; oy++)
        for (let ox = 0; ox < p.outW; ox++) {
          const d = dy[((n * p.cOut + co) * p.outH + oy) * p.outW + ox];
          db[co] += d;
          for (let c = 0; c < cpg; c++)
            for (let ky = 0; ky < p.kh; ky++) {
              const iy = oy * p.strideH - p.padH + ky * p.dilationH;
              if (iy < 0 || iy >= p.h) continue;
              for (let kx = 0; kx < p.kw; kx++) {
                const ix = ox * p.strideW - p.padW + kx * p.dilationW;
                if (ix < 0 || ix >= p.w) continue;
                const xi = ((n * p.cIn + g * cpg + c) * p.h + iy) * p.w + ix, wi = ((co * cpg + c) * p.kh + ky) * p.kw + kx;
                dx[xi] += w[wi] * d;
                dw[wi] += x[xi] * d;
              }
            }
        }
    }
  return { dx, dw, db };
}

/** max |got - want| / (atol + rtol·|want|); NaN must match NaN, infinities must match exactly. */
export function worstError(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number): number {
  if (got.length !== want.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i], w = want[i];
    let e: number;
    if (Number.isNaN(w) || Number.isNaN(g)) e = Number.isNaN(w) && Number.isNaN(g) ? 0 : Infinity;
    else if (!Number.isFinite(w) || !Number.isFinite(g)) e = g === w ? 0 : Infinity;
    else e = Math.abs(g - w) / (atol + rtol * Math.abs(w));
    worst = Math.max(worst, e);
  }
  return worst;
}
