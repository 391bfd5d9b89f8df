// Helpers the kernel files share beyond common.cuh: element conversion for templated kernels and
// a stream-ordered scratch buffer for split reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "common.cuh"

namespace kintsugi::cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }

inline int multiprocessors(int device) {
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute(MultiProcessorCount)");
  return sms > 0 ? sms : 1;
}

// Device memory that lives until the work queued on `stream` before its destruction is done:
// cudaMallocAsync / cudaFreeAsync where the device has memory pools, otherwise cudaMalloc and a
// stream synchronisation before cudaFree.
class Scratch {
 public:
  Scratch(int device, size_t bytes, cudaStream_t stream) : stream_(stream) {
    int pools = 0;
    check(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device), "cudaDeviceGetAttribute(MemoryPoolsSupported)");
    async_ = pools != 0;
    if (async_) check(cudaMallocAsync(&ptr_, bytes, stream), "cudaMallocAsync");
    else check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
  }
  ~Scratch() {
    if (!ptr_) return;
    if (async_) {
      cudaFreeAsync(ptr_, stream_);
    } else {
      cudaStreamSynchronize(stream_);
      cudaFree(ptr_);
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
  bool async_ = false;
};

}  // namespace kintsugi::cuda
