// Loads the native addon with node-gyp-build: in a source checkout the workspace's freshly built
// native/build first, otherwise the package's own prebuilds/ (an installed package). Every
// failure is collected so the final error says what was tried and how to fix it.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Layout = 'row' | 'col';
export type ChecksumKind = 'row' | 'col' | 'weightedRow' | 'weightedCol';
export type BagMode = 'sum' | 'mean';

export interface NativeConvParams {
  n: number; cIn: number; h: number; w: number; cOut: number; kh: number; kw: number;
  strideH: number; strideW: number; padH: number; padW: number; dilationH: number; dilationW: number; groups: number;
  /** Activation layout; the addon reads 'nchw' when absent. */
  layout?: 'nchw' | 'nhwc';
}

export interface NativeDevice {
  kind: 'cpu' | 'cuda';
  index: number;
  name: string;
  totalMemory: number;
  threads: number;
  multiprocessors: number;
  isa: string;
  clockKHz?: number;
  computeCapability?: string;
}

export interface NativePackedMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeNvmlStats {
  samples: number;
  drops: number;
  lateTicks: number;
  threadCpuMs: number;
  wallMs: number;
  buffered: number;
  running: boolean;
  error: string;
}

export interface NativeNvmlSampler {
  readonly name: string;
  readonly running: boolean;
  start(intervalMs: number): void;
  stop(): void;
  /** nvmlSampleFields doubles per sample: time, epoch, gpu %, memory %, used, total, SM MHz, W, C. */
  drain(): Float64Array;
  stats(): NativeNvmlStats;
}

export interface NativeNvmlDevice {
  index: number;
  name: string;
  uuid: string;
  memoryTotal: number;
}
export interface NativeCudaBuffer {
  readonly bytes: number;
  readonly device: number;
  readonly disposed: boolean;
  dispose(): void;
}
export interface NativeCudaStream {
  readonly disposed: boolean;
  synchronize(): Promise<void>;
  dispose(): void;
}
export interface NativeCudaEvent {
  readonly disposed: boolean;
  record(stream: NativeCudaStream | null): void;
  query(): boolean;
  synchronize(): Promise<void>;
  elapsedMs(end: NativeCudaEvent): number;
  dispose(): void;
}
type CudaFloat = 'float32' | 'float16' | 'bfloat16';
type HostArray = Float32Array | Float64Array | Int32Array | Uint8Array;

type Maybe<T> = T | null;
// Functions whose first argument is `async` return a Promise when it is true.
type Call<Args extends unknown[], R> = {
  (async: true, ...args: Args): Promise<R>;
  (async: false, ...args: Args): R;
};

/** How the addon set glibc's malloc at load (see device.ts mallocTuning). */
export interface MallocTuning {
  tuned: boolean;
  mmapThresholdBytes: number;
  trimThresholdBytes: number;
}

export interface NativeAddon {
  version: string;
  cudaCompiled: boolean;
  PackedMatrix: new () => NativePackedMatrix;
  devices(): NativeDevice[];
  cudaStatus(): { compiled: boolean; deviceCount: number; reason: string };
  cpuInfo(): {
    brand: string; logicalCores: number; bestIsa: string; activeIsa: string; avx2: boolean; fma: boolean; avx512: boolean;
    l1dBytes: number; l2Bytes: number; l3Bytes: number;
  };
  mallocTuning(): MallocTuning;
  numThreads(): number;
  setNumThreads(threads: number): void;
  setThreadBackground(): boolean;
  spinMicros(): number;
  setSpinMicros(us: number): void;
  setIsaLimit(isa: 'portable' | 'avx2' | 'avx512'): string;
  sgemm: Call<[Layout, boolean, boolean, number, number, number, number, Float32Array, number, Float32Array, number, number, Float32Array, number], Float32Array>;
  packB(layout: Layout, transB: boolean, k: number, n: number, b: Float32Array, ldb: number): NativePackedMatrix;
  sgemmPacked: Call<[Layout, boolean, number, number, Float32Array, number, NativePackedMatrix, number, Float32Array, number], Float32Array>;
  conv2dForward: Call<[NativeConvParams, Float32Array, Float32Array, Maybe<Float32Array>, Float32Array], Float32Array>;
  conv2dPackedSize(params: NativeConvParams): number;
  conv2dPackWeights: Call<[NativeConvParams, Float32Array, Float32Array], Float32Array>;
  conv2dForwardPacked: Call<[NativeConvParams, Float32Array, Float32Array, Maybe<Float32Array>, Float32Array], Float32Array>;
  conv2dBackwardData: Call<[NativeConvParams, Float32Array, Float32Array, Float32Array], Float32Array>;
  conv2dBackwardWeight: Call<[NativeConvParams, Float32Array, Float32Array, Float32Array, Maybe<Float32Array>], Float32Array>;
  checksum: Call<[ChecksumKind, Float32Array | Float64Array, number, number, number, Maybe<Float32Array | Float64Array>, Float64Array], Float64Array>;
  xorEncode: Call<[Uint8Array[], Uint8Array], Uint8Array>;
  xorInto: Call<[Uint8Array, Uint8Array], Uint8Array>;
  sumEncode: Call<[Float32Array[], Maybe<Float32Array>, Float32Array], Float32Array>;
  sumDecode: Call<[Float32Array, Float32Array[], Float32Array, number, Float32Array], Float32Array>;
  rsEncode: Call<[number, number, Uint8Array[], Uint8Array[]], undefined>;
  rsDecode: Call<[number, number, Uint8Array[], boolean[]], undefined>;
  rsUpdateParity: Call<[number, number, number, Uint8Array, Uint8Array[]], undefined>;
  reluForward: Call<[Float32Array, Float32Array], Float32Array>;
  reluBackward: Call<[Float32Array, Float32Array, Float32Array], Float32Array>;
  addInto: Call<[Float32Array, Float32Array], Float32Array>;
  adagradUpdate: Call<[Float32Array, Float32Array, Float32Array, number, number, number], Float32Array>;
  batchNormForward: Call<[Float32Array, number, number, number, number, number, boolean, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float64Array], Float32Array>;
  batchNormBackward: Call<[Float32Array, number, number, number, number, number, boolean, Float32Array, Float32Array, Float64Array, Float32Array, Float32Array, Float32Array], Float32Array>;
  embeddingBagForward: Call<[Float32Array, number, number, Int32Array, Int32Array, Maybe<Float32Array>, BagMode, Float32Array], Float32Array>;
  embeddingBagBackward: Call<[Float32Array, number, number, Int32Array, Int32Array, Maybe<Float32Array>, BagMode, number, Float32Array], Float32Array>;
  pairwiseDotsForward: Call<[Float32Array, number, number, number, boolean, Float32Array], Float32Array>;
  pairwiseDotsBackward: Call<[Float32Array, Float32Array, number, number, number, boolean, Float32Array], Float32Array>;
  gatherRows: Call<[Int32Array, number, Int32Array, number, number, Int32Array], Int32Array>;
  scatterRows: Call<[Int32Array, number, Int32Array, Int32Array, boolean, Uint8Array | null, Uint8Array | null], Int32Array>;
  largePages(bytes: number): ArrayBuffer;
  adviseHugePages(view: ArrayBufferView): boolean;
  sgemmChecked: Call<[Layout, boolean, boolean, number, number, number, number, Float32Array, number, Float32Array, number, Float32Array, number,
    'one-sided' | 'two-sided', number, boolean, Maybe<Float32Array>, number, Float64Array], Float64Array>;
  abftGroupWidth(): number;
  abftGroupSums(transB: boolean, k: number, n: number, b: Float32Array, ldb: number, width: number, out: Float32Array): Float32Array;
  abftRowCheck: Call<[boolean, number, number, number, Float32Array, number, Float64Array, Float64Array, Float32Array, number, Float64Array, Float64Array, Float64Array], Float64Array>;
  sgemmRowChecked: Call<[Layout, boolean, boolean, number, number, number, number, Float32Array, number, Float32Array, number, number, Float32Array, number,
    Float64Array, Float64Array, Float64Array, Float64Array, Float64Array], Float64Array>;
  nvmlAvailable(library?: string): { available: boolean; reason: string; library: string };
  nvmlDevices(library?: string): NativeNvmlDevice[];
  NvmlSampler: new (device: number | string, bufferSize: number, library?: string) => NativeNvmlSampler;
  nvmlSampleFields: number;
  CudaBuffer: new (device: number, bytes: number) => NativeCudaBuffer;
  CudaStream: new (device: number) => NativeCudaStream;
  CudaEvent: new (device: number) => NativeCudaEvent;
  cudaProperties(device: number): {
    name: string; computeCapability: string; major: number; minor: number; multiprocessors: number; smClockKHz: number; memoryClockKHz: number;
    memoryBusWidth: number; totalMemory: number; l2CacheBytes: number; sharedMemoryPerBlockOptin: number; maxThreadsPerMultiprocessor: number;
    warpSize: number; pciBusId: number; uuid: string;
  };
  cudaMemoryInfo(device: number): { free: number; total: number };
  cudaPinned(bytes: number): ArrayBuffer;
  cudaUpload: Call<[number, Maybe<NativeCudaStream>, NativeCudaBuffer, number, HostArray], HostArray>;
  cudaDownload: Call<[number, Maybe<NativeCudaStream>, NativeCudaBuffer, number, HostArray], HostArray>;
  cudaCopyDevice(device: number, stream: Maybe<NativeCudaStream>, dst: NativeCudaBuffer, dstOffset: number, src: NativeCudaBuffer, srcOffset: number, bytes: number): void;
  cudaMemset(device: number, stream: Maybe<NativeCudaStream>, dst: NativeCudaBuffer, dstOffset: number, value: number, bytes: number): void;
  cudaConvert(device: number, stream: Maybe<NativeCudaStream>, from: CudaFloat, src: NativeCudaBuffer, srcOffset: number, to: CudaFloat, dst: NativeCudaBuffer, dstOffset: number, count: number): void;
  cudaGemm(device: number, stream: Maybe<NativeCudaStream>, backend: 'kintsugi' | 'cublas', transA: boolean, transB: boolean, m: number, n: number, k: number,
    alpha: number, a: NativeCudaBuffer, aOffset: number, lda: number, b: NativeCudaBuffer, bOffset: number, ldb: number, beta: number,
    c: NativeCudaBuffer, cOffset: number, ldc: number, abType: CudaFloat, cType: CudaFloat, tf32: boolean): void;
  cublasStatus(): { available: boolean; library?: string; reason?: string };
  cudaConv2d(pass: 'forward' | 'backwardData' | 'backwardWeight', device: number, stream: Maybe<NativeCudaStream>, dtype: 'float32' | 'float16', params: NativeConvParams,
    in0: NativeCudaBuffer, in0Offset: number, in1: NativeCudaBuffer, in1Offset: number, out0: NativeCudaBuffer, out0Offset: number,
    out1: Maybe<NativeCudaBuffer>, out1Offset: number): void;
  cudaChecksum(axis: 'rows' | 'cols', device: number, stream: Maybe<NativeCudaStream>, a: NativeCudaBuffer, aOffset: number, m: number, n: number, ld: number,
    out: NativeCudaBuffer, outOffset: number): void;
  cudaXorEncode(device: number, stream: Maybe<NativeCudaStream>, blocks: (object | number)[], len: number, parity: NativeCudaBuffer, parityOffset: number): Promise<void>;
  cudaSumEncode(device: number, stream: Maybe<NativeCudaStream>, blocks: (object | number)[], coeffs: Maybe<Float32Array>, len: number, parity: NativeCudaBuffer, parityOffset: number): Promise<void>;
  cudaSumDecode(device: number, stream: Maybe<NativeCudaStream>, available: (object | number)[], coeffs: Maybe<Float32Array>, missingCoeff: number, len: number,
    parity: NativeCudaBuffer, parityOffset: number, out: NativeCudaBuffer, outOffset: number): Promise<void>;
  cudaEmbeddingBag(pass: 'forward' | 'backward', device: number, stream: Maybe<NativeCudaStream>, rows: number, dim: number, indices: Int32Array, offsets: Int32Array,
    weights: Maybe<Float32Array>, mode: BagMode, scale: number, src: NativeCudaBuffer, srcOffset: number, dst: NativeCudaBuffer, dstOffset: number): Promise<void>;
  cudaPairwiseDots(pass: 'forward' | 'backward', device: number, stream: Maybe<NativeCudaStream>, n: number, vectors: number, dim: number, self: boolean,
    z: NativeCudaBuffer, zOffset: number, gradOut: Maybe<NativeCudaBuffer>, gradOutOffset: number, dst: NativeCudaBuffer, dstOffset: number): Promise<void>;
  cudaAbftWorkspaceBytes(scheme: 'global' | 'thread', k: number, maxEvents: number, hasWeightSums: boolean): number;
  cudaGemmChecked(phase: 'launch' | 'finish', device: number, stream: Maybe<NativeCudaStream>, scheme: 'global' | 'thread', check: 'one-sided' | 'two-sided',
    tolerance: number, correct: boolean, transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
    a: NativeCudaBuffer, aOffset: number, lda: number, b: NativeCudaBuffer, bOffset: number, ldb: number, c: NativeCudaBuffer, cOffset: number, ldc: number,
    abType: CudaFloat, workspace: NativeCudaBuffer, workspaceOffset: number, weightSums: Maybe<NativeCudaBuffer>, weightSumsOffset: number,
    faults: Maybe<Int32Array>, maxEvents: number, report: Maybe<Float64Array>): undefined | Promise<Float64Array>;
  cudaAbftWeightSums(device: number, stream: Maybe<NativeCudaStream>, dtype: CudaFloat, transB: boolean, k: number, n: number, b: NativeCudaBuffer, bOffset: number,
    ldb: number, out: NativeCudaBuffer, outOffset: number): void;
  cudaFlipBit(device: number, stream: Maybe<NativeCudaStream>, dtype: CudaFloat, data: NativeCudaBuffer, dataOffset: number, count: number, index: number, bit: number): void;
  _throwNativeError(kind: string): never;
  _setFaultInjection(row: number | null, col?: number, bit?: number): boolean;
}

const require = createRequire(import.meta.url);
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function isWorkspaceNative(dir: string): boolean {
  try {
    return JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8')).name === '@kintsugi/native' && existsSync(resolve(dir, 'build/Release'));
  } catch {
    return false;
  }
}

function load(): NativeAddon {
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeAddon;
  const candidates = [packageRoot];
  const workspaceNative = resolve(packageRoot, '../../native');
  if (isWorkspaceNative(workspaceNative)) candidates.unshift(workspaceNative);
  const failures: string[] = [];
  for (const dir of candidates) {
    try {
      return nodeGypBuild(dir);
    } catch (err) {
      failures.push(`  ${dir}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(
    [
      `Could not load the Kintsugi native addon for ${process.platform}-${process.arch} (Node ${process.version}).`,
      'Tried:',
      ...failures,
      'Possible solutions:',
      '- Install a published package: prebuilt binaries ship for linux-x64 in prebuilds/.',
      '- From a source checkout, run "npx -y pnpm@10.34.9 install" at the repository root (needs cmake and g++).',
      '- Set KINTSUGI_CUDA=off to build without the CUDA backend if nvcc fails.',
    ].join('\n'),
  );
}

export const native: NativeAddon = load();
