// What every CUDA source of the backend shares: turning cudaError_t into kintsugi::Error with the
// error's name and the call, choosing the device for the calling thread, and small launch helpers.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "kintsugi/cuda.h"
#include "kintsugi/error.h"

namespace kintsugi::cuda {

// Throws Device (OutOfMemory for cudaErrorMemoryAllocation) as "<call> failed: <name> (<string>)".
[[noreturn]] void throw_cuda(cudaError_t err, const char* call);

inline void check(cudaError_t err, const char* call) {
  if (err != cudaSuccess) throw_cuda(err, call);
}

// Makes `device` current on this thread for the rest of the scope's calls (libuv workers and the
// JS thread may each have a different current device).
void use_device(int device);

// Host-side checks of a GEMM's sizes, leading dimensions and dtypes (shared by our kernels and
// the cuBLAS path); throws Range / Type errors before any CUDA call.
void validate_gemm(const GemmArgs& args);

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

inline unsigned blocks_for(int64_t work, int threads, unsigned cap = 65535u * 8u) {
  int64_t b = (work + threads - 1) / threads;
  if (b < 1) b = 1;
  return b > int64_t(cap) ? cap : unsigned(b);
}

}  // namespace kintsugi::cuda
