// The study's layer runner on a GPU: inputs, weights and outputs live in device memory, each run
// enqueues one cudaConv2d or cudaGemm, and times come from CUDA events around every run.
import { cudaProperties, DeviceTensor, type DeviceDType } from '../cuda/memory.js';
import { cudaConv2d, cudaGemm, timeCuda } from '../cuda/ops.js';
import { Tensor } from '../tensor.js';
import { rangeError } from '../validate.js';
import { convOptions, layerShapes, type Layer } from './networks.js';
import { gpuPeakFlops, type Dtype } from './peak.js';
import type { LayerRunner, PreparedLayer } from './study.js';

const storage: Record<Dtype, DeviceDType> = { fp32: 'float32', tf32: 'float32', fp16: 'float16', bf16: 'bfloat16' };

export function createCudaRunner(device = 0): LayerRunner {
  const p = cudaProperties(device);
  const spec = { computeCapability: p.computeCapability, multiprocessors: p.multiprocessors, clockKHz: p.smClockKHz };
  return {
    device: `${p.name} (sm_${p.major}${p.minor}, ${p.multiprocessors} SMs at ${(p.smClockKHz / 1e3).toFixed(0)} MHz)`,
    bandwidth: p.memoryBandwidth,
    peakFlops: (dtype: Dtype) => gpuPeakFlops(spec, dtype),
    async prepare(layer: Layer, batch: number, dtype: Dtype): Promise<PreparedLayer> {
      if (layer.kind === 'conv' && (dtype === 'bf16' || dtype === 'tf32')) {
        throw rangeError('dtype', 'fp32 or fp16 for convolutions on the GPU (implicit-GEMM conv kernels)', dtype);
      }
      const { input, weight, output } = layerShapes(layer, batch);
      const options = { device, dtype: storage[dtype] };
      const x = await DeviceTensor.from(Tensor.random(input, 1), options);
      const w = await DeviceTensor.from(Tensor.random(weight, 2), options);
      const out = DeviceTensor.empty(output, options);
      const dispose = () => [x, w, out].forEach((t) => t.dispose());
      if (layer.kind === 'linear') return { run: () => void cudaGemm(x, w, { out, tf32: dtype === 'tf32' }), dispose };
      const conv = { ...convOptions(layer), out };
      return { run: () => void cudaConv2d(x, w, null, conv), dispose };
    },
    async time(prepared: PreparedLayer, repeats: number): Promise<number[]> {
      return (await timeCuda(() => void prepared.run(), { device, warmup: 0, repeat: repeats })).times;
    },
  };
}
