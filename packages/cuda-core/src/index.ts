export { Tensor, checkTensor, contiguousStrides, type DType, type TypedArrayOf, type AnyTypedArray } from './tensor.js';
export { devices, cudaStatus, cpuInfo, mallocTuning, numThreads, setNumThreads, setThreadBackground, spinMicros, setSpinMicros, setIsaLimit, type Device } from './device.js';
export { gemm, gemmSync, sgemm, sgemmSync, PackedWeights, type GemmOptions, type SgemmArgs } from './gemm.js';
export { conv2d, conv2dSync, PackedConv2dWeights, conv2dBackward, conv2dBackwardSync, conv2dParams, conv2dOutputShape, type Conv2dLayout, type Conv2dOptions, type Conv2dForwardOptions, type Conv2dBackwardOptions, type Conv2dGradients } from './conv.js';
export { rowSums, rowSumsSync, colSums, colSumsSync, weightedRowSums, weightedRowSumsSync, weightedColSums, weightedColSumsSync } from './checksum.js';
export { xorEncode, xorEncodeSync, xorInto, xorIntoSync, sumEncode, sumEncodeSync, sumDecode, sumDecodeSync, ReedSolomonCode } from './parity.js';
export { embeddingBag, embeddingBagSync, embeddingBagBackward, embeddingBagBackwardSync, pairwiseDots, pairwiseDotsSync, pairwiseDotsBackward, pairwiseDotsBackwardSync, pairwiseDotCount, gatherRowsSync, scatterRowsSync, largePageFloat32Array, sharedLargePageFloat32Array, type EmbeddingBagOptions, type EmbeddingBagBackwardOptions, type PairwiseDotsOptions, type GatherRowsOptions, type ScatterRowsOptions } from './embedding.js';
export {
  gemmChecked, gemmCheckedSync, abftGroupWidth, abftGroupSums, abftRowCheck, abftRowCheckSync, gemmRowChecked, gemmRowCheckedSync, _setFaultInjection,
  type AbftCheck, type AbftAction, type AbftTileEvent, type AbftGemmReport, type AbftGroupSums, type GemmCheckedOptions, type RowCheck,
} from './abft.js';
export {
  gpuPeakFlops, cpuPeak, measureCpu, cpuClockMHz, cpuFlopsPerCycle, smArch, flopsPerClockPerSm, dtypes, dtypeBytes,
  type Dtype, type GpuSpec, type CpuPeak, type CpuMeasurement,
} from './util/peak.js';
export {
  network, networkNames, networkFlops, layerFlops, layerBytes, layerShapes, layerIntensity, layerLabel,
  type Network, type NetworkName, type Layer, type ConvLayer, type LinearLayer,
} from './util/networks.js';
export {
  runStudy, withPeak, createCpuRunner, defaultBatches,
  type StudyOptions, type StudyResult, type LayerResult, type NetworkSummary, type LayerRunner, type PreparedLayer, type UtilizationSource, type UtilizationSample,
} from './util/study.js';
export { rooflineSvg, utilizationSvg, lineChartSvg, si, type ChartSeries, type LineChartOptions } from './util/svg.js';
export * from './cuda/index.js';
export { KintsugiTypeError, KintsugiRangeError } from './validate.js';
export { native as _native, type MallocTuning } from './addon.js';
export {
  NvmlSampler, nvmlAvailable, nvmlDevices, nvmlFields, fieldStats as nvmlFieldStats,
  type NvmlSample, type NvmlSummary, type NvmlField, type NvmlFieldStats, type NvmlSamplerOptions, type NvmlDevice,
} from './nvml.js';
