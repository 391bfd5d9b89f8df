// Device memory, streams, events and properties: thin checked wrappers over the CUDA runtime.
// Every call first makes the device current on the calling thread, because libuv's workers and
// the JS thread each keep their own current device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdio>

#include "common.cuh"

namespace kintsugi::cuda {

void throw_cuda(cudaError_t err, const char* call) {
  cudaGetLastError();  // clear a non-sticky error so the next call does not report it again
  std::string message = std::string(call) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  throw Error(err == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Device, message);
}

void use_device(int device) {
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count) {
    throw_expected(ErrorKind::Range, "a CUDA device index in [0, " + std::to_string(count) + ")", "device", std::to_string(device));
  }
  check(cudaSetDevice(device), "cudaSetDevice");
}

void check_launch(const char* what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda(err, what);
}

Properties properties(int device) {
  use_device(device);
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  Properties p;
  p.name = prop.name;
  p.major = prop.major;
  p.minor = prop.minor;
  p.multiprocessors = prop.multiProcessorCount;
  // The clock fields left cudaDeviceProp in CUDA 13; the attributes remain.
  check(cudaDeviceGetAttribute(&p.sm_clock_khz, cudaDevAttrClockRate, device), "cudaDeviceGetAttribute(ClockRate)");
  check(cudaDeviceGetAttribute(&p.memory_clock_khz, cudaDevAttrMemoryClockRate, device), "cudaDeviceGetAttribute(MemoryClockRate)");
  check(cudaDeviceGetAttribute(&p.memory_bus_width, cudaDevAttrGlobalMemoryBusWidth, device), "cudaDeviceGetAttribute(GlobalMemoryBusWidth)");
  p.total_memory = int64_t(prop.totalGlobalMem);
  p.l2_cache_bytes = prop.l2CacheSize;
  p.shared_memory_per_block_optin = int64_t(prop.sharedMemPerBlockOptin);
  p.max_threads_per_multiprocessor = prop.maxThreadsPerMultiProcessor;
  p.warp_size = prop.warpSize;
  p.pci_bus_id = prop.pciBusID;
  p.pci_device_id = prop.pciDeviceID;
  p.pci_domain_id = prop.pciDomainID;
  char uuid[64];
  const unsigned char* u = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
  std::snprintf(uuid, sizeof uuid, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4],
                u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  p.uuid = uuid;
  return p;
}

void set_device(int device) { use_device(device); }

void synchronize_device(int device) {
  use_device(device);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

void memory_info(int device, int64_t* free_bytes, int64_t* total_bytes) {
  use_device(device);
  size_t f = 0, t = 0;
  check(cudaMemGetInfo(&f, &t), "cudaMemGetInfo");
  *free_bytes = int64_t(f);
  *total_bytes = int64_t(t);
}

void* malloc_device(int device, size_t bytes) {
  use_device(device);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t f = 0, t = 0;
    cudaMemGetInfo(&f, &t);
    throw Error(ErrorKind::OutOfMemory, "cudaMalloc failed: cudaErrorMemoryAllocation: out of device memory allocating " + std::to_string(bytes) +
                                            " bytes on CUDA device " + std::to_string(device) + " (" + std::to_string(f) + " of " +
                                            std::to_string(t) + " bytes free)");
  }
  check(err, "cudaMalloc");
  return p;
}

void free_device(int device, void* ptr) {
  if (!ptr) return;
  use_device(device);
  check(cudaFree(ptr), "cudaFree");
}

void* malloc_pinned(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMallocHost(&p, bytes == 0 ? 1 : bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw Error(ErrorKind::OutOfMemory, "cudaMallocHost failed: cudaErrorMemoryAllocation: cannot pin " + std::to_string(bytes) + " bytes of host memory");
  }
  check(err, "cudaMallocHost");
  return p;
}

void free_pinned(void* ptr) {
  if (ptr) check(cudaFreeHost(ptr), "cudaFreeHost");
}

static cudaMemcpyKind memcpy_kind(CopyKind kind) {
  switch (kind) {
    case CopyKind::HostToDevice: return cudaMemcpyHostToDevice;
    case CopyKind::DeviceToHost: return cudaMemcpyDeviceToHost;
    case CopyKind::DeviceToDevice: return cudaMemcpyDeviceToDevice;
  }
  return cudaMemcpyDefault;
}

void copy_async(int device, void* dst, const void* src, size_t bytes, CopyKind kind, Stream stream) {
  if (bytes == 0) return;
  use_device(device);
  check(cudaMemcpyAsync(dst, src, bytes, memcpy_kind(kind), as_stream(stream)), "cudaMemcpyAsync");
}

void copy(int device, void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (bytes == 0) return;
  use_device(device);
  check(cudaMemcpy(dst, src, bytes, memcpy_kind(kind)), "cudaMemcpy");
}

void memset_async(int device, void* dst, int value, size_t bytes, Stream stream) {
  if (bytes == 0) return;
  use_device(device);
  check(cudaMemsetAsync(dst, value, bytes, as_stream(stream)), "cudaMemsetAsync");
}

Stream stream_create(int device) {
  use_device(device);
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  return s;
}

void stream_destroy(int device, Stream s) {
  if (!s) return;
  use_device(device);
  check(cudaStreamDestroy(as_stream(s)), "cudaStreamDestroy");
}

void stream_synchronize(int device, Stream s) {
  use_device(device);
  check(cudaStreamSynchronize(as_stream(s)), "cudaStreamSynchronize");
}

Event event_create(int device) {
  use_device(device);
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "cudaEventCreate");
  return e;
}

void event_destroy(int device, Event e) {
  if (!e) return;
  use_device(device);
  check(cudaEventDestroy(static_cast<cudaEvent_t>(e)), "cudaEventDestroy");
}

void event_record(int device, Event e, Stream s) {
  use_device(device);
  check(cudaEventRecord(static_cast<cudaEvent_t>(e), as_stream(s)), "cudaEventRecord");
}

void event_synchronize(Event e) { check(cudaEventSynchronize(static_cast<cudaEvent_t>(e)), "cudaEventSynchronize"); }

bool event_query(Event e) {
  cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(e));
  if (err == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  check(err, "cudaEventQuery");
  return true;
}

float event_elapsed_ms(Event start, Event end) {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)), "cudaEventElapsedTime");
  return ms;
}

void stream_wait_event(int device, Stream s, Event e) {
  use_device(device);
  check(cudaStreamWaitEvent(as_stream(s), static_cast<cudaEvent_t>(e), 0), "cudaStreamWaitEvent");
}

}  // namespace kintsugi::cuda
