// CUDA devices, streams, events and DeviceTensor: memory on a GPU with typed shape and dtype.
// Kernel launches only enqueue work on a stream, so they return at once; anything that waits for
// the GPU (downloads, synchronize) returns a Promise and waits off the JS thread.
import { native, type NativeCudaBuffer, type NativeCudaEvent, type NativeCudaStream } from '../addon.js';
import { cudaStatus } from '../device.js';
import { checkTensor, Tensor, type DType } from '../tensor.js';
import { integer, oneOf, plainObject, rangeError, shapeArray, typeError } from '../validate.js';

/** Element types a DeviceTensor can hold. float16/bfloat16 exist only on the device: uploads and downloads convert from/to float32 there. */
export type DeviceDType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int32' | 'uint8';
export const deviceDTypes: readonly DeviceDType[] = ['float32', 'float16', 'bfloat16', 'float64', 'int32', 'uint8'];
const elementBytes: Record<DeviceDType, number> = { float32: 4, float16: 2, bfloat16: 2, float64: 8, int32: 4, uint8: 1 };
const hostDType: Record<DeviceDType, DType> = { float32: 'float32', float16: 'float32', bfloat16: 'float32', float64: 'float64', int32: 'int32', uint8: 'uint8' };

/** Thrown when there is no usable CUDA device (no GPU, no driver, or a CPU-only build). */
export class CudaUnavailableError extends Error {
  readonly code = 'KINTSUGI_UNSUPPORTED';
}

/** Checks a device index against the GPUs present; explains why there are none. */
export function cudaDevice(device: unknown = 0, name = 'device'): number {
  const status = cudaStatus();
  if (status.deviceCount === 0) throw new CudaUnavailableError(`No CUDA device is available: ${status.reason}`);
  return integer(device, name, 0, status.deviceCount - 1);
}

export interface CudaProperties {
  name: string;
  computeCapability: string;
  major: number;
  minor: number;
  multiprocessors: number;
  smClockKHz: number;
  memoryClockKHz: number;
  memoryBusWidth: number;
  totalMemory: number;
  l2CacheBytes: number;
  sharedMemoryPerBlockOptin: number;
  maxThreadsPerMultiprocessor: number;
  warpSize: number;
  pciBusId: number;
  uuid: string;
  /** Theoretical DRAM bandwidth in bytes/s: 2 (DDR) × memory clock × bus width / 8. */
  memoryBandwidth: number;
}

export function cudaProperties(device = 0): CudaProperties {
  const p = native.cudaProperties(cudaDevice(device));
  return { ...p, memoryBandwidth: (2 * p.memoryClockKHz * 1e3 * p.memoryBusWidth) / 8 };
}

export function cudaMemoryInfo(device = 0): { free: number; total: number } {
  return native.cudaMemoryInfo(cudaDevice(device));
}

/** An ordered queue of GPU work. Pass it as `stream` to overlap copies and kernels. */
export class CudaStream {
  readonly device: number;
  readonly handle: NativeCudaStream;
  constructor(device = 0) {
    this.device = cudaDevice(device);
    this.handle = new native.CudaStream(this.device);
  }
  /** Resolves when every operation enqueued so far has finished. */
  synchronize(): Promise<void> {
    return this.handle.synchronize();
  }
  get disposed(): boolean {
    return this.handle.disposed;
  }
  dispose(): void {
    this.handle.dispose();
  }
}

/** A marker in a stream: completion queries and GPU-side timing. */
export class CudaEvent {
  readonly device: number;
  readonly handle: NativeCudaEvent;
  constructor(device = 0) {
    this.device = cudaDevice(device);
    this.handle = new native.CudaEvent(this.device);
  }
  record(stream?: CudaStream | null): this {
    this.handle.record(streamHandle(stream, this.device));
    return this;
  }
  /** True once the work before the recorded point is done. */
  query(): boolean {
    return this.handle.query();
  }
  synchronize(): Promise<void> {
    return this.handle.synchronize();
  }
  /** GPU milliseconds from this event to `end` (both recorded and complete). */
  elapsedMs(end: CudaEvent): number {
    if (!(end instanceof CudaEvent)) throw typeError('end', 'a CudaEvent', end);
    return this.handle.elapsedMs(end.handle);
  }
  dispose(): void {
    this.handle.dispose();
  }
}

export function streamHandle(stream: unknown, device: number): NativeCudaStream | null {
  if (stream === undefined || stream === null) return null;
  if (!(stream instanceof CudaStream)) throw typeError('options.stream', 'a CudaStream', stream);
  if (stream.device !== device) throw rangeError('options.stream', `a stream of CUDA device ${device}`, `a stream of device ${stream.device}`, true);
  return stream.handle;
}

/** Page-locked host memory: copies from and to it run asynchronously and at full PCIe speed. */
export function pinnedArray(length: number, dtype: 'float32' | 'float64' | 'int32' | 'uint8' = 'float32'): Float32Array | Float64Array | Int32Array | Uint8Array {
  integer(length, 'length', 1, 2 ** 40);
  const d = oneOf(dtype, 'dtype', ['float32', 'float64', 'int32', 'uint8'] as const);
  const buffer = native.cudaPinned(length * elementBytes[d]);
  return d === 'float32' ? new Float32Array(buffer) : d === 'float64' ? new Float64Array(buffer) : d === 'int32' ? new Int32Array(buffer) : new Uint8Array(buffer);
}

export interface DeviceTensorOptions {
  device?: number;
  dtype?: DeviceDType;
  stream?: CudaStream | null;
}

const hostDTypes: readonly DType[] = ['float32', 'float64', 'int32', 'uint8'];
function hostTensor(source: unknown): Tensor {
  return source instanceof Tensor ? checkTensor(source, 'source', hostDTypes) : new Tensor(source as Float32Array);
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A dense row-major tensor in GPU memory. dispose() frees it; later use throws. */
export class DeviceTensor {
  readonly device: number;
  readonly dtype: DeviceDType;
  readonly shape: readonly number[];
  readonly size: number;
  readonly byteOffset = 0;
  #buffer: NativeCudaBuffer | null;

  private constructor(buffer: NativeCudaBuffer, shape: readonly number[], dtype: DeviceDType) {
    this.#buffer = buffer;
    this.device = buffer.device;
    this.shape = Object.freeze([...shape]);
    this.size = product(shape);
    this.dtype = dtype;
  }

  /** Uninitialised memory of the given shape. */
  static empty(shape: readonly number[], options: DeviceTensorOptions = {}): DeviceTensor {
    const o = plainObject(options, 'options') as DeviceTensorOptions;
    const dims = shapeArray(shape, 'shape');
    const dtype = o.dtype === undefined ? 'float32' : oneOf(o.dtype, 'options.dtype', deviceDTypes);
    const device = cudaDevice(o.device ?? 0, 'options.device');
    return new DeviceTensor(new native.CudaBuffer(device, product(dims) * elementBytes[dtype]), dims, dtype);
  }

  static zeros(shape: readonly number[], options: DeviceTensorOptions = {}): DeviceTensor {
    const t = DeviceTensor.empty(shape, options);
    native.cudaMemset(t.device, streamHandle(options.stream, t.device), t.buffer, 0, 0, t.bytes);
    return t;
  }

  /** Copies a host tensor (any strides) to the device, converting float32 to float16/bfloat16 there when asked. */
  static async from(source: Tensor | Float32Array | Float64Array | Int32Array | Uint8Array, options: DeviceTensorOptions = {}): Promise<DeviceTensor> {
    const host = hostTensor(source);
    const o = plainObject(options, 'options') as DeviceTensorOptions;
    const dtype = o.dtype === undefined ? (host.dtype as DeviceDType) : oneOf(o.dtype, 'options.dtype', deviceDTypes);
    if (hostDType[dtype] !== host.dtype) throw rangeError('source', `a ${hostDType[dtype]} tensor for a ${dtype} DeviceTensor`, `a ${host.dtype} tensor`, true);
    const t = DeviceTensor.empty(host.shape, { ...options, dtype });
    try {
      await t.upload(host, options.stream);
    } catch (err) {
      t.dispose();
      throw err;
    }
    return t;
  }

  get buffer(): NativeCudaBuffer {
    if (this.#buffer === null || this.#buffer.disposed) throw typeError('tensor', 'a live DeviceTensor', 'a disposed DeviceTensor', true);
    return this.#buffer;
  }
  get disposed(): boolean {
    return this.#buffer === null || this.#buffer.disposed;
  }
  get bytes(): number {
    return this.size * elementBytes[this.dtype];
  }
  get elementBytes(): number {
    return elementBytes[this.dtype];
  }

  /** Overwrites the contents from a host tensor of the same size; resolves when the copy is done. */
  async upload(source: Tensor | Float32Array | Float64Array | Int32Array | Uint8Array, stream?: CudaStream | null): Promise<void> {
    const host = hostTensor(source);
    if (host.size !== this.size) throw rangeError('source', `${this.size} elements`, `${host.size} elements`, true);
    if (hostDType[this.dtype] !== host.dtype) throw rangeError('source', `a ${hostDType[this.dtype]} tensor`, `a ${host.dtype} tensor`, true);
    const s = streamHandle(stream, this.device);
    const data = host.contiguousData();
    if (this.dtype === 'float16' || this.dtype === 'bfloat16') {
      const staging = new native.CudaBuffer(this.device, this.size * 4);
      try {
        await native.cudaUpload(true, this.device, s, staging, 0, data);
        native.cudaConvert(this.device, s, 'float32', staging, 0, this.dtype, this.buffer, 0, this.size);
        await syncStream(this.device, s);
      } finally {
        staging.dispose();
      }
      return;
    }
    await native.cudaUpload(true, this.device, s, this.buffer, 0, data);
  }

  /** Copies to a new host Tensor (float16/bfloat16 come back as float32). */
  async download(stream?: CudaStream | null): Promise<Tensor> {
    const s = streamHandle(stream, this.device);
    const out = Tensor.zeros(this.shape, hostDType[this.dtype]);
    if (this.dtype === 'float16' || this.dtype === 'bfloat16') {
      const staging = new native.CudaBuffer(this.device, this.size * 4);
      try {
        native.cudaConvert(this.device, s, this.dtype, this.buffer, 0, 'float32', staging, 0, this.size);
        await native.cudaDownload(true, this.device, s, staging, 0, out.data);
      } finally {
        staging.dispose();
      }
      return out;
    }
    await native.cudaDownload(true, this.device, s, this.buffer, 0, out.data);
    return out;
  }

  /**
   * Enqueues a copy from (pinned) host memory without waiting: the caller keeps `source` unchanged
   * until the stream is synchronised. Raw bytes: `source` must have this tensor's byte length.
   */
  uploadAsync(source: Float32Array | Float64Array | Int32Array | Uint8Array, stream: CudaStream): void {
    if (source.byteLength !== this.bytes) throw rangeError('source', `${this.bytes} bytes`, `${source.byteLength} bytes`, true);
    native.cudaUpload(false, this.device, streamHandle(stream, this.device), this.buffer, 0, source);
  }
  /** Enqueues a copy to (pinned) host memory; read `target` after the stream is synchronised. */
  downloadAsync(target: Float32Array | Float64Array | Int32Array | Uint8Array, stream: CudaStream): void {
    if (target.byteLength !== this.bytes) throw rangeError('target', `${this.bytes} bytes`, `${target.byteLength} bytes`, true);
    native.cudaDownload(false, this.device, streamHandle(stream, this.device), this.buffer, 0, target);
  }

  /** A new DeviceTensor of another dtype (float32 <-> float16 <-> bfloat16), converted on the device. */
  to(dtype: 'float32' | 'float16' | 'bfloat16', stream?: CudaStream | null): DeviceTensor {
    const floats = ['float32', 'float16', 'bfloat16'] as const;
    const target = oneOf(dtype, 'dtype', floats);
    if (!(floats as readonly string[]).includes(this.dtype)) throw rangeError('tensor', 'a float32, float16 or bfloat16 DeviceTensor', `a ${this.dtype} DeviceTensor`, true);
    const out = DeviceTensor.empty(this.shape, { device: this.device, dtype: target });
    native.cudaConvert(this.device, streamHandle(stream, this.device), this.dtype as typeof target, this.buffer, 0, target, out.buffer, 0, this.size);
    return out;
  }

  dispose(): void {
    this.#buffer?.dispose();
    this.#buffer = null;
  }
}

async function syncStream(device: number, stream: NativeCudaStream | null): Promise<void> {
  if (stream) return stream.synchronize();
  // The default stream: an event recorded on it completes after everything before it.
  const e = new native.CudaEvent(device);
  try {
    e.record(null);
    await e.synchronize();
  } finally {
    e.dispose();
  }
}

/** Resolves when the stream (or the device's default stream) has finished its work. */
export function synchronize(device = 0, stream?: CudaStream | null): Promise<void> {
  const d = cudaDevice(device);
  return syncStream(d, streamHandle(stream, d));
}

/** A DeviceTensor argument of the given dtypes and rank. */
export function checkDeviceTensor(value: unknown, name: string, dtypes: readonly DeviceDType[], ndim?: number): DeviceTensor {
  if (!(value instanceof DeviceTensor)) throw typeError(name, 'a DeviceTensor', value);
  if (value.disposed) throw typeError(name, 'a live DeviceTensor', 'a disposed DeviceTensor', true);
  if (!dtypes.includes(value.dtype)) throw typeError(name, `a DeviceTensor of dtype ${dtypes.join(' or ')}`, `dtype ${value.dtype}`, true);
  if (ndim !== undefined && value.shape.length !== ndim) throw rangeError(name, `a ${ndim}-D DeviceTensor`, `shape [${value.shape}]`, true);
  return value;
}
