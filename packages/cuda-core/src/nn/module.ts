// The layer contract: explicit forward and backward (no autograd tape). Each layer keeps what its
// backward needs from the last forward, so one forward must be followed by at most one backward
// before the next forward — the usual training-step shape.
import { Tensor } from '../tensor.js';

/** A trainable tensor and its gradient (same shape, accumulated by backward, cleared by zeroGrad). */
export class Parameter {
  readonly value: Tensor<'float32'>;
  readonly grad: Tensor<'float32'>;
  /**
   * Rows of a 2-D parameter whose gradient may be non-zero since the last zeroGrad, or null when
   * the gradient is dense. Embedding tables set it so optimizers and zeroGrad touch only those rows.
   */
  rows: Int32Array | null = null;

  constructor(value: Tensor<'float32'>) {
    this.value = value.isContiguous && value.offset === 0 ? value : value.clone();
    this.grad = Tensor.zeros(value.shape, 'float32');
  }

  get size(): number {
    return this.value.size;
  }

  zeroGrad(): void {
    const g = this.grad.data;
    if (this.rows === null) {
      g.fill(0);
      return;
    }
    const dim = this.value.shape[1];
    for (const r of this.rows) g.fill(0, r * dim, (r + 1) * dim);
    this.rows = null;
  }

  /** Adds touched rows (deduplicated, sorted) to the sparse-row hint. */
  addRows(rows: Int32Array): void {
    const merged = new Set<number>(this.rows ?? []);
    for (const r of rows) merged.add(r);
    this.rows = Int32Array.from([...merged].sort((a, b) => a - b));
  }
}

/** JSON description of a layer; `type` picks the constructor when a model file is loaded. */
export interface LayerConfig {
  type: string;
  [key: string]: unknown;
}

/**
 * Anything with parameters, buffers and a config: the unit a model file stores. Most layers are
 * Modules (tensor in, tensor out); EmbeddingBag takes index bags instead and is a Layer only.
 */
export abstract class Layer {
  training = true;

  abstract config(): LayerConfig;

  /** Sub-layers, named for parameter paths (`0.weight`, `conv1.weight`). */
  children(): [string, Layer][] {
    return [];
  }
  /** Own trainable parameters (not the children's). */
  ownParameters(): [string, Parameter][] {
    return [];
  }
  /** Own non-trainable state saved with the model (BatchNorm running statistics). */
  ownBuffers(): [string, Tensor<'float32'>][] {
    return [];
  }

  namedParameters(prefix = ''): [string, Parameter][] {
    const out: [string, Parameter][] = this.ownParameters().map(([n, p]) => [prefix + n, p]);
    for (const [name, child] of this.children()) out.push(...child.namedParameters(`${prefix}${name}.`));
    return out;
  }
  namedBuffers(prefix = ''): [string, Tensor<'float32'>][] {
    const out: [string, Tensor<'float32'>][] = this.ownBuffers().map(([n, b]) => [prefix + n, b]);
    for (const [name, child] of this.children()) out.push(...child.namedBuffers(`${prefix}${name}.`));
    return out;
  }
  parameters(): Parameter[] {
    return this.namedParameters().map(([, p]) => p);
  }
  /** Every tensor a model file stores: parameters and buffers by path. */
  stateDict(): Map<string, Tensor<'float32'>> {
    const state = new Map<string, Tensor<'float32'>>();
    for (const [n, p] of this.namedParameters()) state.set(n, p.value);
    for (const [n, b] of this.namedBuffers()) state.set(n, b);
    return state;
  }

  train(on = true): this {
    this.training = on;
    for (const [, child] of this.children()) child.train(on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }
  parameterCount(): number {
    return this.parameters().reduce((n, p) => n + p.size, 0);
  }
}

export abstract class Module extends Layer {
  abstract forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>>;
  /** Gradient with respect to the last forward's input; accumulates parameter gradients. */
  abstract backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>>;
}
