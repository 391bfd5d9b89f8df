// The conv and linear layer shapes (not weights) of four ImageNet CNNs at 224×224 input, as in
// torchvision, and their FLOPs, bytes moved and arithmetic intensity per batch. Pooling, batch
// norm, activations and residual adds are left out: they are a small share of the FLOPs, and
// utilization is measured on the layers that a GEMM/conv kernel runs. Layers of identical shape
// (the repeated blocks of a stage) are listed once, under their first name, with a count.
import { conv2dParams } from '../conv.js';
import { rangeError } from '../validate.js';

export interface ConvLayer {
  name: string;
  kind: 'conv';
  /** How many layers of the network have exactly this shape. */
  count: number;
  cIn: number;
  cOut: number;
  kh: number;
  kw: number;
  stride: number;
  pad: number;
  groups: number;
  /** Input height and width. */
  h: number;
  w: number;
}

export interface LinearLayer {
  name: string;
  kind: 'linear';
  count: number;
  inFeatures: number;
  outFeatures: number;
}

export type Layer = ConvLayer | LinearLayer;

export interface Network {
  name: NetworkName;
  title: string;
  layers: Layer[];
}

const outSize = (size: number, k: number, stride: number, pad: number) => Math.floor((size + 2 * pad - k) / stride) + 1;

/** Collects layers in order, merging each into an earlier one of identical shape. */
class Builder {
  readonly layers: Layer[] = [];

  /** A k×k conv with "same" padding at input size h (square); returns the output size. */
  conv(name: string, cIn: number, cOut: number, k: number, stride: number, h: number, groups = 1, pad = Math.floor(k / 2)): number {
    this.add({ name, kind: 'conv', count: 1, cIn, cOut, kh: k, kw: k, stride, pad, groups, h, w: h });
    return outSize(h, k, stride, pad);
  }

  linear(name: string, inFeatures: number, outFeatures: number): void {
    this.add({ name, kind: 'linear', count: 1, inFeatures, outFeatures });
  }

  private add(layer: Layer): void {
    const key = (l: Layer) => JSON.stringify({ ...l, name: '', count: 0 });
    const same = this.layers.find((l) => key(l) === key(layer));
    if (same) same.count++;
    else this.layers.push(layer);
  }
}

// ResNet stem: 7×7/2 conv 3→64 (224→112), then a 3×3/2 max pool (112→56).
function resnetStem(b: Builder): number {
  const h = b.conv('conv1', 3, 64, 7, 2, 224);
  return outSize(h, 3, 2, 1);
}

function resnet18(): Layer[] {
  const b = new Builder();
  let h = resnetStem(b), cIn = 64;
  [64, 128, 256, 512].forEach((planes, stage) => {
    for (let i = 0; i < 2; i++) {
      const stride = i === 0 && stage > 0 ? 2 : 1, p = `layer${stage + 1}.${i}`;
      const hOut = b.conv(`${p}.conv1`, cIn, planes, 3, stride, h);
      b.conv(`${p}.conv2`, planes, planes, 3, 1, hOut);
      if (stride !== 1 || cIn !== planes) b.conv(`${p}.downsample`, cIn, planes, 1, stride, h);
      cIn = planes;
      h = hOut;
    }
  });
  b.linear('fc', 512, 1000);
  return b.layers;
}

// ResNet-50 v1.5 (torchvision): the stride sits on the bottleneck's 3×3 conv.
function resnet50(): Layer[] {
  const b = new Builder();
  let h = resnetStem(b), cIn = 64;
  ([[64, 3], [128, 4], [256, 6], [512, 3]] as const).forEach(([planes, blocks], stage) => {
    for (let i = 0; i < blocks; i++) {
      const stride = i === 0 && stage > 0 ? 2 : 1, p = `layer${stage + 1}.${i}`;
      b.conv(`${p}.conv1`, cIn, planes, 1, 1, h);
      const hOut = b.conv(`${p}.conv2`, planes, planes, 3, stride, h);
      b.conv(`${p}.conv3`, planes, 4 * planes, 1, 1, hOut);
      if (i === 0) b.conv(`${p}.downsample`, cIn, 4 * planes, 1, stride, h);
      cIn = 4 * planes;
      h = hOut;
    }
  });
  b.linear('fc', 2048, 1000);
  return b.layers;
}

function vgg16(): Layer[] {
  const b = new Builder();
  let h = 224, cIn = 3;
  for (const [stage, widths] of [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]].entries()) {
    widths.forEach((c, j) => {
      b.conv(`conv${stage + 1}_${j + 1}`, cIn, c, 3, 1, h);
      cIn = c;
    });
    h = outSize(h, 2, 2, 0); // 2×2/2 max pool
  }
  b.linear('fc6', 512 * 7 * 7, 4096);
  b.linear('fc7', 4096, 4096);
  b.linear('fc8', 4096, 1000);
  return b.layers;
}

// MobileNetV2 (width 1.0): inverted residual blocks (expansion t, channels c, repeats n, stride s)
// of a 1×1 expand conv (absent when t = 1), a 3×3 depthwise conv (groups = channels) and a 1×1
// project conv.
function mobilenetv2(): Layer[] {
  const b = new Builder();
  let h = b.conv('features.0', 3, 32, 3, 2, 224), cIn = 32, index = 1;
  const settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]];
  for (const [t, c, n, s] of settings) {
    for (let i = 0; i < n; i++, index++) {
      const hidden = cIn * t, p = `features.${index}`;
      if (t !== 1) b.conv(`${p}.expand`, cIn, hidden, 1, 1, h);
      const hOut = b.conv(`${p}.depthwise`, hidden, hidden, 3, i === 0 ? s : 1, h, hidden);
      b.conv(`${p}.project`, hidden, c, 1, 1, hOut);
      cIn = c;
      h = hOut;
    }
  }
  b.conv(`features.${index}`, cIn, 1280, 1, 1, h);
  b.linear('classifier', 1280, 1000);
  return b.layers;
}

const builders = { resnet18, resnet50, vgg16, mobilenetv2 };
export type NetworkName = keyof typeof builders;
export const networkNames = Object.keys(builders) as NetworkName[];
const titles: Record<NetworkName, string> = { resnet18: 'ResNet-18', resnet50: 'ResNet-50', vgg16: 'VGG-16', mobilenetv2: 'MobileNetV2' };

/** A network's layers by name (resnet18, resnet50, vgg16, mobilenetv2). */
export function network(name: string): Network {
  if (!Object.hasOwn(builders, name)) throw rangeError('network', `one of ${networkNames.join(', ')}`, name);
  const key = name as NetworkName;
  return { name: key, title: titles[key], layers: builders[key]() };
}

/** Input, weight and output shapes of a layer at a batch size (NCHW / [batch, features]). */
export function layerShapes(layer: Layer, batch: number): { input: number[]; weight: number[]; output: number[] } {
  if (layer.kind === 'linear') {
    return { input: [batch, layer.inFeatures], weight: [layer.inFeatures, layer.outFeatures], output: [batch, layer.outFeatures] };
  }
  const p = convParams(layer, batch);
  return { input: [batch, layer.cIn, layer.h, layer.w], weight: [layer.cOut, layer.cIn / layer.groups, layer.kh, layer.kw], output: [batch, layer.cOut, p.outH, p.outW] };
}

function convParams(layer: ConvLayer, batch: number) {
  return conv2dParams([batch, layer.cIn, layer.h, layer.w], [layer.cOut, layer.cIn / layer.groups, layer.kh, layer.kw], convOptions(layer));
}

export function convOptions(layer: ConvLayer): { stride: number; padding: number; groups: number } {
  return { stride: layer.stride, padding: layer.pad, groups: layer.groups };
}

const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** FLOPs of one instance of the layer: 2 × multiply-adds (bias adds not counted). */
export function layerFlops(layer: Layer, batch: number): number {
  return layer.kind === 'linear' ? 2 * batch * layer.inFeatures * layer.outFeatures : convParams(layer, batch).flops;
}

/** Bytes a layer must move at least once: input, weights and output at `bytesPerElement`. */
export function layerBytes(layer: Layer, batch: number, bytesPerElement = 4): number {
  const { input, weight, output } = layerShapes(layer, batch);
  return bytesPerElement * (product(input) + product(weight) + product(output));
}

/** Arithmetic intensity: FLOPs per byte moved. */
export function layerIntensity(layer: Layer, batch: number, bytesPerElement = 4): number {
  return layerFlops(layer, batch) / layerBytes(layer, batch, bytesPerElement);
}

/** FLOPs of a whole network's conv and linear layers at a batch size. */
export function networkFlops(net: Network, batch: number): number {
  return net.layers.reduce((sum, l) => sum + l.count * layerFlops(l, batch), 0);
}

export function layerLabel(layer: Layer): string {
  return layer.count > 1 ? `${layer.name} (×${layer.count})` : layer.name;
}
