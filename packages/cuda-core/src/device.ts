// Devices, the CPU's capabilities and the native thread pool.
import { native, type MallocTuning, type NativeDevice } from './addon.js';
import { integer, oneOf } from './validate.js';

export type Device = NativeDevice;

/** The CPU (always first) and every usable CUDA GPU. */
export function devices(): Device[] {
  return native.devices();
}

/** Why there is or is not a GPU: whether the CUDA backend was compiled and what the driver said. */
export function cudaStatus(): { compiled: boolean; deviceCount: number; reason: string } {
  return native.cudaStatus();
}

export function cpuInfo(): ReturnType<typeof native.cpuInfo> {
  return native.cpuInfo();
}

/**
 * Whether the addon set glibc's malloc to keep freed memory for reuse (up to 64 MiB; its mmap and
 * trim thresholds at glibc's own ceilings, 32 and 64 MiB). Kernels write into fresh typed arrays,
 * and fresh pages cost ~1-2.5 µs each to fault in on a VM, more than many small kernels take.
 * Not tuned on other C libraries, with KINTSUGI_MALLOC_TUNE=0, or when the process sets
 * MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES itself.
 */
export function mallocTuning(): MallocTuning {
  return native.mallocTuning();
}

/** Threads the native kernels use (KINTSUGI_NUM_THREADS sets the initial value). */
export function numThreads(): number {
  return native.numThreads();
}
export function setNumThreads(threads: number): void {
  native.setNumThreads(integer(threads, 'threads', 1, 1024));
}

/**
 * Marks the calling thread (a worker thread doing background work, such as rebuilding a lost shard
 * beside training) as a background one, for good: the OS runs it only when no thread of normal
 * priority wants a core (Linux SCHED_IDLE: a thread waking up preempts it at once), and the native
 * kernels it calls run on it alone rather than on the shared pool, whose threads have normal
 * priority. Returns whether the OS granted idle scheduling (false off Linux; the kernels still run
 * on the calling thread). Other threads keep the whole pool.
 */
export function setThreadBackground(): boolean {
  return native.setThreadBackground();
}

/**
 * How long (µs) the native pool's threads spin for their next job before sleeping (KINTSUGI_SPIN_US
 * sets the initial value; default 1000). Spinning spares back-to-back calls (a network's layers)
 * the threads' wake-ups, which cost up to ~0.5 ms on a VM; past its first 20 µs a spinning thread
 * yields its core to any thread with work. 0 sleeps at once.
 */
export function spinMicros(): number {
  return native.spinMicros();
}
export function setSpinMicros(us: number): void {
  native.setSpinMicros(integer(us, 'us', 0, 1_000_000));
}

/** Limit the instruction set the CPU kernels use (to compare paths); returns the one now active. */
export function setIsaLimit(isa: 'portable' | 'avx2' | 'avx512'): string {
  return native.setIsaLimit(oneOf(isa, 'isa', ['portable', 'avx2', 'avx512'] as const));
}
