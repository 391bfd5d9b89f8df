// Row and column checksums (optionally weighted) with fp64 accumulation: the ABFT primitives.
import { native, type ChecksumKind } from './addon.js';
import { checkTensor, Tensor } from './tensor.js';
import { rangeError } from './validate.js';

type Floating = 'float32' | 'float64';

function plan(kind: ChecksumKind, a: unknown, weights: unknown) {
  const A = checkTensor(a, 'a', ['float32', 'float64'] as Floating[], 2);
  const [m, n] = A.shape;
  // Unit inner stride lets the kernel read rows in place; other views are copied once.
  const M = A.strides[1] === 1 || n <= 1 ? A : A.clone();
  const ld = m <= 1 ? Math.max(1, n) : Math.max(1, M.strides[0]);
  let w: Float32Array | Float64Array | null = null;
  if (kind === 'weightedRow' || kind === 'weightedCol') {
    const W = checkTensor(weights, 'weights', [A.dtype], 1);
    const need = kind === 'weightedRow' ? n : m;
    if (W.shape[0] !== need) throw rangeError('weights', `shape [${need}]`, `shape [${W.shape}]`, true);
    w = W.contiguousData();
  }
  const out = Tensor.zeros([kind === 'row' || kind === 'weightedRow' ? m : n], 'float64');
  return { args: [kind, M.data.subarray(M.offset), m, n, ld, w, out.data] as const, out };
}

function asyncChecksum(kind: ChecksumKind) {
  return async (a: Tensor<Floating>, weights?: Tensor<Floating>): Promise<Tensor<'float64'>> => {
    const p = plan(kind, a, weights);
    await native.checksum(true, ...p.args);
    return p.out;
  };
}
function syncChecksum(kind: ChecksumKind) {
  return (a: Tensor<Floating>, weights?: Tensor<Floating>): Tensor<'float64'> => {
    const p = plan(kind, a, weights);
    native.checksum(false, ...p.args);
    return p.out;
  };
}

/** out[i] = Σ_j a[i, j] */
export const rowSums: (a: Tensor<Floating>) => Promise<Tensor<'float64'>> = asyncChecksum('row');
export const rowSumsSync: (a: Tensor<Floating>) => Tensor<'float64'> = syncChecksum('row');
/** out[j] = Σ_i a[i, j] */
export const colSums: (a: Tensor<Floating>) => Promise<Tensor<'float64'>> = asyncChecksum('col');
export const colSumsSync: (a: Tensor<Floating>) => Tensor<'float64'> = syncChecksum('col');
/** out[i] = Σ_j w[j] a[i, j] */
export const weightedRowSums: (a: Tensor<Floating>, weights: Tensor<Floating>) => Promise<Tensor<'float64'>> = asyncChecksum('weightedRow');
export const weightedRowSumsSync: (a: Tensor<Floating>, weights: Tensor<Floating>) => Tensor<'float64'> = syncChecksum('weightedRow');
/** out[j] = Σ_i w[i] a[i, j] */
export const weightedColSums: (a: Tensor<Floating>, weights: Tensor<Floating>) => Promise<Tensor<'float64'>> = asyncChecksum('weightedCol');
export const weightedColSumsSync: (a: Tensor<Floating>, weights: Tensor<Floating>) => Tensor<'float64'> = syncChecksum('weightedCol');
