// @kintsugi/cuda-core/nn: layers with explicit forward/backward, losses, optimizers, datasets,
// model files and the training loop, all on cuda-core's kernels.
export { Layer, Module, Parameter, type LayerConfig } from './module.js';
export {
  Linear, Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, ReLU, Flatten, Dropout, Softmax, BatchNorm2d,
  Sequential, ResidualBlock, EmbeddingBag, layerFromConfig,
  type Bags, type LinearOptions, type Conv2dLayerOptions, type BatchNormOptions,
} from './layers.js';
export { crossEntropy, logSoftmax, mse, binaryCrossEntropyWithLogits, argmax, countCorrect, type LossResult, type Labels } from './losses.js';
export {
  Optimizer, SGD, Adam, Adagrad, RowwiseAdagrad, LrScheduler, StepLR, CosineLR,
  type SgdOptions, type AdamOptions, type AdagradOptions,
} from './optim.js';
export {
  parseIdx, readIdx, loadMnist, loadFashionMnist, subset, randomSubset, DataLoader, normalization,
  type IdxData, type IdxArray, type ImageDataset, type FashionMnistSplit, type Batch, type LoaderOptions, type Split,
} from './data.js';
export { encodeSafetensors, decodeSafetensors, type SafetensorsFile } from './safetensors.js';
export { saveModel, loadModel, loadModelFile, loadWeights, loadStateDict, encodeModel, decodeModel, MODEL_FORMAT, type LoadedModel } from './serialize.js';
export { mlp, cnn, resnetSmall, buildModel, modelNames, type ModelName } from './models.js';
export { trainStep, trainEpoch, evaluate, predict, type StepStats, type EpochProgress, type EpochResult, type TrainEpochOptions } from './train.js';
export { Rng, manualSeed, globalRng } from './rng.js';
export { matmul, adagradUpdate, SYNC_FLOPS } from './ops.js';
