// The architectures the training CLI knows. Each is a plain Sequential, so its config (and so the
// model file) describes it completely.
import { integer, oneOf } from '../validate.js';
import { BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU, ResidualBlock, Sequential } from './layers.js';
import { manualSeed } from './rng.js';

export const modelNames = ['mlp', 'cnn', 'resnet-small'] as const;
export type ModelName = (typeof modelNames)[number];

/** 784-200-100-10 with ReLU: the base MLP of the ParM paper (Kosaian et al., SOSP'19). */
export function mlp(inputs = 784, classes = 10): Sequential {
  return new Sequential(new Flatten(), new Linear(inputs, 200), new ReLU(), new Linear(200, 100), new ReLU(), new Linear(100, classes));
}

/**
 * LeNet-style: two 3×3 conv stages (32 and 64 channels), each conv → 2×2 max-pool → BN → ReLU,
 * then a 128-unit hidden layer with dropout. Pooling before BN and ReLU (max-pool commutes with
 * ReLU) runs the element-wise layers on a quarter of the values, which on the CPU is most of their
 * cost; BatchNorm lets a few epochs at a high learning rate converge.
 */
export function cnn(channels = 1, classes = 10, size = 28): Sequential {
  const flat = 64 * Math.floor(size / 4) * Math.floor(size / 4);
  return new Sequential(
    new Conv2d(channels, 32, 3, { padding: 1, bias: false }), new MaxPool2d(2), new BatchNorm2d(32), new ReLU(),
    new Conv2d(32, 64, 3, { padding: 1, bias: false }), new MaxPool2d(2), new BatchNorm2d(64), new ReLU(),
    new Flatten(), new Linear(flat, 128), new ReLU(), new Dropout(0.3), new Linear(128, classes),
  );
}

/** A small ResNet: a 3×3 stem, three residual stages (16, 32, 64 channels), global average pool. */
export function resnetSmall(channels = 1, classes = 10): Sequential {
  return new Sequential(
    new Conv2d(channels, 16, 3, { padding: 1, bias: false }), new BatchNorm2d(16), new ReLU(),
    new ResidualBlock(16, 16), new ResidualBlock(16, 32, 2), new ResidualBlock(32, 64, 2),
    new GlobalAvgPool2d(), new Linear(64, classes),
  );
}

/** Builds a named architecture with seeded initial weights. */
export function buildModel(name: ModelName, seed = 1): Sequential {
  oneOf(name, 'model', modelNames);
  manualSeed(integer(seed, 'seed', 0, 2 ** 32 - 1));
  switch (name) {
    case 'mlp': return mlp();
    case 'cnn': return cnn();
    case 'resnet-small': return resnetSmall();
  }
}
