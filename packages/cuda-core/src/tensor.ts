// A strided view over a typed array. Views (reshape, transpose, slice) share the data; the
// kernels take views without copies when their strides allow it.
import { integer, rangeError, shapeArray, typeError } from './validate.js';

export type DType = 'float32' | 'float64' | 'int32' | 'uint8';
export interface DataTypes {
  float32: Float32Array;
  float64: Float64Array;
  int32: Int32Array;
  uint8: Uint8Array;
}
export type TypedArrayOf<D extends DType> = DataTypes[D];
export type AnyTypedArray = Float32Array | Float64Array | Int32Array | Uint8Array;

const constructors = { float32: Float32Array, float64: Float64Array, int32: Int32Array, uint8: Uint8Array } as const;

/**
 * A typed array of n elements with undefined contents (see Tensor.empty): for arrays the caller
 * writes whole before reading.
 */
export function emptyArray<T extends Float32Array | Float64Array | Int32Array | Uint8Array>(
  Ctor: { new (n: number): T; new (buffer: ArrayBuffer, offset: number, length: number): T; BYTES_PER_ELEMENT: number },
  n: number,
): T {
  // Below a page, zero-filling costs nothing next to the loop that fills it.
  if (n * Ctor.BYTES_PER_ELEMENT < 4096) return new Ctor(n);
  return new Ctor(Buffer.allocUnsafeSlow(n * Ctor.BYTES_PER_ELEMENT).buffer as ArrayBuffer, 0, n);
}

export function dtypeOf(data: unknown): DType | undefined {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint8Array) return 'uint8';
  return undefined;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const disposeSymbol: typeof Symbol.dispose = Symbol.dispose ?? (Symbol.for('nodejs.dispose') as typeof Symbol.dispose);

export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  #data: TypedArrayOf<D> | null;

  constructor(data: TypedArrayOf<D>, shape?: readonly number[], strides?: readonly number[], offset = 0) {
    const dtype = dtypeOf(data);
    if (!dtype) throw typeError('data', 'a Float32Array, Float64Array, Int32Array or Uint8Array', data);
    const dims = shape === undefined ? [data.length] : shapeArray(shape, 'shape');
    const steps = strides === undefined ? contiguousStrides(dims) : shapeArray(strides, 'strides');
    if (steps.length !== dims.length) throw rangeError('strides', `${dims.length} strides (one per dimension)`, steps.length, true);
    integer(offset, 'offset', 0, 2 ** 53);
    const size = product(dims);
    if (size > 0) {
      const last = offset + dims.reduce((acc, d, i) => acc + (d - 1) * steps[i], 0);
      if (last >= data.length) {
        throw rangeError('data', `at least ${last + 1} elements for shape [${dims}] with strides [${steps}] and offset ${offset}`, data);
      }
    }
    this.dtype = dtype as D;
    this.shape = Object.freeze(dims);
    this.strides = Object.freeze(steps);
    this.offset = offset;
    this.#data = data;
  }

  static zeros<D extends DType = 'float32'>(shape: readonly number[], dtype: D = 'float32' as D): Tensor<D> {
    const dims = shapeArray(shape, 'shape');
    const Ctor = constructors[dtype as DType];
    if (!Ctor) throw typeError('dtype', "one of 'float32' | 'float64' | 'int32' | 'uint8'", dtype);
    return new Tensor(new Ctor(product(dims)) as TypedArrayOf<D>, dims);
  }

  /**
   * A tensor whose contents are undefined until written (no zero fill): for outputs that a kernel
   * overwrites whole. Large zeroed arrays cost a memset, or a page fault per 4 KiB of fresh
   * memory; an uninitialised one reuses memory the allocator already holds as it is.
   */
  static empty<D extends DType = 'float32'>(shape: readonly number[], dtype: D = 'float32' as D): Tensor<D> {
    const dims = shapeArray(shape, 'shape');
    const Ctor = constructors[dtype as DType];
    if (!Ctor) throw typeError('dtype', "one of 'float32' | 'float64' | 'int32' | 'uint8'", dtype);
    return new Tensor(emptyArray(Ctor as Float32ArrayConstructor, product(dims)) as unknown as TypedArrayOf<D>, dims);
  }

  static from<D extends DType>(data: TypedArrayOf<D>, shape?: readonly number[]): Tensor<D> {
    return new Tensor(data, shape);
  }

  static fromArray<D extends DType = 'float32'>(values: ArrayLike<number>, shape?: readonly number[], dtype: D = 'float32' as D): Tensor<D> {
    const Ctor = constructors[dtype as DType];
    if (!Ctor) throw typeError('dtype', "one of 'float32' | 'float64' | 'int32' | 'uint8'", dtype);
    return new Tensor(Ctor.from(values) as TypedArrayOf<D>, shape);
  }

  // Uniform values in [lo, hi) from a seeded generator (reproducible tests and benches).
  static random(shape: readonly number[], seed = 1, lo = -1, hi = 1): Tensor<'float32'> {
    const t = Tensor.zeros(shape, 'float32');
    fillUniform(t.data, seed, lo, hi);
    return t;
  }

  /** The backing array (shared with every view). Throws once the tensor is disposed. */
  get data(): TypedArrayOf<D> {
    if (this.#data === null) throw typeError('tensor', 'a live Tensor', 'a disposed Tensor', true);
    return this.#data;
  }
  get disposed(): boolean {
    return this.#data === null;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get size(): number {
    return product(this.shape);
  }
  get isContiguous(): boolean {
    const c = contiguousStrides(this.shape);
    return this.shape.every((d, i) => d <= 1 || this.strides[i] === c[i]);
  }

  /** Drops this handle's reference to the data; later use throws. Views made earlier keep theirs. */
  dispose(): void {
    this.#data = null;
  }
  [disposeSymbol](): void {
    this.dispose();
  }

  #index(indices: readonly number[]): number {
    if (indices.length !== this.ndim) throw rangeError('indices', `${this.ndim} indices`, indices.length, true);
    let at = this.offset;
    indices.forEach((i, d) => {
      integer(i, `indices[${d}]`, 0, this.shape[d] - 1);
      at += i * this.strides[d];
    });
    return at;
  }
  get(...indices: number[]): number {
    return this.data[this.#index(indices)];
  }
  set(value: number, ...indices: number[]): void {
    this.data[this.#index(indices)] = value;
  }

  /** A view with new shape; copies first when the layout does not allow a view. -1 infers one size. */
  reshape(shape: readonly number[]): Tensor<D> {
    if (!Array.isArray(shape)) throw typeError('shape', 'an array of integers', shape);
    const dims = shape.slice();
    const inferred = dims.indexOf(-1);
    if (inferred >= 0) {
      const rest = product(dims.filter((_, i) => i !== inferred));
      if (rest === 0 || this.size % rest !== 0) throw rangeError('shape', `a shape with ${this.size} elements`, `[${shape}]`, true);
      dims[inferred] = this.size / rest;
    }
    shapeArray(dims, 'shape');
    if (product(dims) !== this.size) throw rangeError('shape', `a shape with ${this.size} elements`, `[${shape}]`, true);
    const base = this.contiguous();
    return new Tensor(base.data, dims, contiguousStrides(dims), base.offset);
  }

  /** Swaps two dimensions without copying. */
  transpose(dim0 = 0, dim1 = 1): Tensor<D> {
    integer(dim0, 'dim0', 0, this.ndim - 1);
    integer(dim1, 'dim1', 0, this.ndim - 1);
    const shape = this.shape.slice(), strides = this.strides.slice();
    [shape[dim0], shape[dim1]] = [shape[dim1], shape[dim0]];
    [strides[dim0], strides[dim1]] = [strides[dim1], strides[dim0]];
    return new Tensor(this.data, shape, strides, this.offset);
  }

  /** Elements [start, end) along `dim`, as a view. */
  slice(dim: number, start: number, end: number = this.shape[dim]): Tensor<D> {
    integer(dim, 'dim', 0, this.ndim - 1);
    integer(start, 'start', 0, this.shape[dim]);
    integer(end, 'end', start, this.shape[dim]);
    const shape = this.shape.slice();
    shape[dim] = end - start;
    return new Tensor(this.data, shape, this.strides, this.offset + start * this.strides[dim]);
  }

  /** This tensor when it is contiguous, else a contiguous copy. */
  contiguous(): Tensor<D> {
    return this.isContiguous ? this : this.clone();
  }

  clone(): Tensor<D> {
    return new Tensor(this.toArray(), this.shape);
  }

  /** The elements in row-major order, as a new typed array. */
  toArray(): TypedArrayOf<D> {
    const data = this.data;
    const Ctor = constructors[this.dtype] as unknown as new (n: number) => TypedArrayOf<D>;
    if (this.isContiguous) return data.slice(this.offset, this.offset + this.size) as TypedArrayOf<D>;
    const out = new Ctor(this.size);
    const index = new Array<number>(this.ndim).fill(0);
    for (let i = 0; i < out.length; i++) {
      let at = this.offset;
      for (let d = 0; d < this.ndim; d++) at += index[d] * this.strides[d];
      out[i] = data[at];
      for (let d = this.ndim - 1; d >= 0; d--) {
        if (++index[d] < this.shape[d]) break;
        index[d] = 0;
      }
    }
    return out;
  }

  /** The data of a contiguous tensor as a typed array starting at its first element (no copy). */
  contiguousData(): TypedArrayOf<D> {
    const t = this.contiguous();
    return t.data.subarray(t.offset, t.offset + t.size) as TypedArrayOf<D>;
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}])`;
  }
}

/** Throws unless `value` is a live Tensor of one of the given dtypes and (optionally) rank. */
export function checkTensor<D extends DType>(value: unknown, name: string, dtypes: readonly D[], ndim?: number): Tensor<D> {
  if (!(value instanceof Tensor)) throw typeError(name, `a Tensor (${dtypes.join(' | ')})`, value);
  if (value.disposed) throw typeError(name, 'a live Tensor', 'a disposed Tensor', true);
  if (!dtypes.includes(value.dtype as D)) throw typeError(name, `a Tensor of dtype ${dtypes.join(' | ')}`, `dtype ${value.dtype}`, true);
  if (ndim !== undefined && value.ndim !== ndim) {
    throw rangeError(name, `a ${ndim}-D Tensor`, `shape [${value.shape.join(', ')}]`, true);
  }
  return value as Tensor<D>;
}

/**
 * A kernel's float32 output: `out` checked to be a live, contiguous tensor of exactly `shape`, or,
 * when undefined, a new zeroed one.
 */
export function outputTensor(out: unknown, name: string, shape: readonly number[]): Tensor<'float32'> {
  if (out === undefined) return Tensor.zeros(shape, 'float32');
  const o = checkTensor(out, name, ['float32'], shape.length);
  if (o.shape.some((v, i) => v !== shape[i])) throw rangeError(name, `shape [${shape}]`, `shape [${o.shape}]`, true);
  if (!o.isContiguous) throw rangeError(name, 'a contiguous Tensor', `strides [${o.strides}]`, true);
  return o;
}

// xorshift32: small, fast and reproducible.
export function fillUniform(out: Float32Array | Float64Array, seed: number, lo = -1, hi = 1): void {
  let s = seed >>> 0 || 0x9e3779b9;
  const scale = (hi - lo) / 4294967296;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = lo + s * scale;
  }
}
