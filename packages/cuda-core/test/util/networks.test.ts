// Layer shapes and FLOP counts of the study's networks against published totals.
import { describe, expect, it } from 'vitest';

import { layerBytes, layerFlops, layerIntensity, layerShapes, network, networkFlops, networkNames, type Layer } from '../../src/index.js';

const count = (layers: Layer[], kind: Layer['kind']) => layers.filter((l) => l.kind === kind).reduce((s, l) => s + l.count, 0);

describe('networks', () => {
  // Multiply-accumulates of the conv and linear layers at batch 1 (torchvision / the papers).
  it.each([
    ['resnet18', 1.814e9, 20, 1],
    ['resnet50', 4.089e9, 53, 1],
    ['vgg16', 15.47e9, 13, 3],
    ['mobilenetv2', 0.3008e9, 52, 1],
  ] as const)('%s: %d MACs, %d convs, %d linear layers', (name, macs, convs, linears) => {
    const net = network(name);
    expect(count(net.layers, 'conv')).toBe(convs);
    expect(count(net.layers, 'linear')).toBe(linears);
    expect(networkFlops(net, 1) / 2).toBeGreaterThan(macs * 0.995);
    expect(networkFlops(net, 1) / 2).toBeLessThan(macs * 1.005);
    // FLOPs scale linearly with the batch.
    expect(networkFlops(net, 8)).toBe(8 * networkFlops(net, 1));
  });

  it('ResNet-18 has 3 downsample convs and a 512→1000 fc; ResNet-18 is ≈ 3.6 GFLOP', () => {
    const net = network('resnet18');
    expect(net.layers.filter((l) => l.name.endsWith('downsample')).length).toBe(3);
    expect(net.layers.at(-1)).toMatchObject({ kind: 'linear', inFeatures: 512, outFeatures: 1000 });
    expect(networkFlops(net, 1) / 1e9).toBeCloseTo(3.63, 2);
  });

  it('MobileNetV2 has depthwise convs with groups = channels and 1x1 expand/project convs', () => {
    const layers = network('mobilenetv2').layers;
    const dw = layers.filter((l) => l.name.endsWith('depthwise'));
    expect(dw.reduce((s, l) => s + l.count, 0)).toBe(17);
    for (const l of dw) if (l.kind === 'conv') expect([l.groups, l.kh]).toEqual([l.cIn, 3]);
    expect(layers.find((l) => l.name === 'features.2.expand')).toMatchObject({ cIn: 16, cOut: 96, kh: 1, h: 112 });
    expect(layers.find((l) => l.name === 'features.17.project')).toMatchObject({ cIn: 960, cOut: 320, kh: 1, h: 7 });
  });

  it('computes FLOPs, bytes and intensity of a hand-checked layer', () => {
    // ResNet-18 layer1 3x3 conv, batch 2: output 2x64x56x56, fan-in 64·3·3 = 576.
    const layer = network('resnet18').layers.find((l) => l.name === 'layer1.0.conv1') as Layer;
    expect(layer).toMatchObject({ kind: 'conv', cIn: 64, cOut: 64, kh: 3, stride: 1, pad: 1, h: 56, count: 4 });
    expect(layerShapes(layer, 2)).toEqual({ input: [2, 64, 56, 56], weight: [64, 64, 3, 3], output: [2, 64, 56, 56] });
    const flops = 2 * (2 * 64 * 56 * 56) * 576;
    const bytes = 4 * (2 * 64 * 56 * 56 + 64 * 64 * 9 + 2 * 64 * 56 * 56);
    expect(layerFlops(layer, 2)).toBe(flops);
    expect(layerBytes(layer, 2)).toBe(bytes);
    expect(layerIntensity(layer, 2)).toBeCloseTo(flops / bytes, 10);
    expect(layerIntensity(layer, 2, 2)).toBeCloseTo((2 * flops) / bytes, 10);
    // Linear: the GEMM intensity 2MNK / (4(MK + KN + MN)).
    const fc = { name: 'fc', kind: 'linear', count: 1, inFeatures: 512, outFeatures: 1000 } as const;
    expect(layerIntensity(fc, 1)).toBeCloseTo((2 * 512 * 1000) / (4 * (512 + 512 * 1000 + 1000)), 12);
  });

  it('rejects an unknown network', () => {
    expect(networkNames).toEqual(['resnet18', 'resnet50', 'vgg16', 'mobilenetv2']);
    expect(() => network('alexnet')).toThrow(/Expected one of resnet18, resnet50, vgg16, mobilenetv2 for network but received "alexnet"/);
  });
});
