// The CUDA backend's host API: device memory, streams, events, and the kernels' launchers.
// No CUDA header is needed to include this file (streams and events are opaque pointers), so the
// binding and the CPU-only build see the same declarations. Without the CUDA backend every call
// throws ErrorKind::Unsupported; with it, CUDA failures throw ErrorKind::Device (or OutOfMemory)
// with the CUDA error's name and the call that failed.
//
// Matrices are row-major, like the CPU API. Every launcher is asynchronous on `stream`
// (nullptr = the device's default stream) and takes device pointers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kintsugi/conv.h"
#include "kintsugi/embedding.h"

namespace kintsugi::cuda {

enum class DType { F32, F16, BF16 };
inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
  }
  return "?";
}

using Stream = void*;  // cudaStream_t
using Event = void*;   // cudaEvent_t

// ---- Devices ----
struct Properties {
  std::string name;
  int major = 0, minor = 0;
  int multiprocessors = 0;
  int sm_clock_khz = 0;          // max SM clock
  int memory_clock_khz = 0;
  int memory_bus_width = 0;      // bits
  int64_t total_memory = 0;      // bytes
  int64_t l2_cache_bytes = 0;
  int64_t shared_memory_per_block_optin = 0;
  int max_threads_per_multiprocessor = 0;
  int warp_size = 32;
  int pci_bus_id = 0, pci_device_id = 0, pci_domain_id = 0;
  std::string uuid;              // "GPU-xxxxxxxx-..." as NVML prints it
};
Properties properties(int device);
void set_device(int device);                           // makes `device` current on this thread
void synchronize_device(int device);
// Free and total bytes of the device's memory (cudaMemGetInfo).
void memory_info(int device, int64_t* free_bytes, int64_t* total_bytes);

// ---- Memory ----
void* malloc_device(int device, size_t bytes);         // OutOfMemory error names the size and free memory
void free_device(int device, void* ptr);
void* malloc_pinned(size_t bytes);                      // page-locked host memory
void free_pinned(void* ptr);
enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
// Asynchronous with respect to the host only when `host` memory is pinned.
void copy_async(int device, void* dst, const void* src, size_t bytes, CopyKind kind, Stream stream);
void copy(int device, void* dst, const void* src, size_t bytes, CopyKind kind);  // synchronous
void memset_async(int device, void* dst, int value, size_t bytes, Stream stream);

// ---- Streams and events ----
Stream stream_create(int device);
void stream_destroy(int device, Stream s);
void stream_synchronize(int device, Stream s);
Event event_create(int device);
void event_destroy(int device, Event e);
void event_record(int device, Event e, Stream s);
void event_synchronize(Event e);
bool event_query(Event e);                               // true once completed
float event_elapsed_ms(Event start, Event end);
void stream_wait_event(int device, Stream s, Event e);

// Throws ErrorKind::Device naming the last kernel launch error, if any (after a launch).
void check_launch(const char* what);

// ---- Element-wise conversion (fp32 <-> fp16/bf16 uploads and downloads) ----
void convert(DType from, const void* src, DType to, void* dst, int64_t count, Stream stream);

// ---- GEMM: C = alpha * op(A) op(B) + beta * C, row-major ----
// A and B share `ab` (F32, F16 or BF16); C is `c` (F32, or the same as `ab`). Accumulation is
// fp32. F16/BF16 run on tensor cores (mma.sync); F32 runs SIMT unless `tf32` (tensor cores with
// TF32 inputs, sm_80+). beta == 0 overwrites C without reading it (NaN in C does not propagate).
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1, beta = 0;
  const void* a = nullptr; int64_t lda = 0;
  const void* b = nullptr; int64_t ldb = 0;
  void* c = nullptr; int64_t ldc = 0;
  DType ab = DType::F32, c_type = DType::F32;
  bool tf32 = false;
};
void gemm(int device, const GemmArgs& args, Stream stream);
// The same through cuBLAS (cublasGemmEx), loaded with dlopen on first use: libcublas.so.13, .12,
// .11 in that order. Throws Unsupported naming the libraries tried when none loads.
void gemm_cublas(int device, const GemmArgs& args, Stream stream);
bool cublas_available(std::string* why);  // loads it if needed; `why` names the libraries tried

// ---- conv2d by implicit GEMM, NCHW, T = float (F32) or __half (F16) with fp32 accumulation ----
void conv2d_forward(int device, DType t, const Conv2dParams& p, const void* x, const void* w,
                    const void* bias /*nullable, same dtype*/, void* y, Stream stream);
void conv2d_backward_data(int device, DType t, const Conv2dParams& p, const void* dy, const void* w,
                          void* dx, Stream stream);
// db may be null. dw and db are overwritten.
void conv2d_backward_weight(int device, DType t, const Conv2dParams& p, const void* x, const void* dy,
                            void* dw, void* db, Stream stream);

// ---- Checksums (fp64 accumulation, like the CPU's), fp32 input ----
void row_sums(int device, const float* a, int64_t m, int64_t n, int64_t ld, double* out, Stream stream);
void col_sums(int device, const float* a, int64_t m, int64_t n, int64_t ld, double* out, Stream stream);

// ---- Parity coding; `blocks` is a device array of k device pointers ----
void xor_encode(int device, const uint8_t* const* blocks, int k, size_t len, uint8_t* parity, Stream stream);
// coeffs: device array of k floats, or nullptr for all ones.
void sum_encode(int device, const float* const* blocks, const float* coeffs, int k, size_t len, float* parity,
                Stream stream);
void sum_decode(int device, const float* parity, const float* const* available, const float* coeffs, int count,
                float missing_coeff, size_t len, float* out, Stream stream);

// ---- Embedding bags: indices/offsets/weights in device memory; args' pointers are device pointers.
// Index checks happen on the host before upload (check_embedding_bag). ----
void embedding_bag_forward(int device, const EmbeddingBagArgs& args, const float* table, float* out, Stream stream);
void embedding_bag_backward(int device, const EmbeddingBagArgs& args, const float* grad_out, float scale,
                            float* grad_table, Stream stream);
// DLRM's pairwise-dot interaction (see embedding.h); z, out, grad_out and grad_z in device memory.
// Results are the CPU's bits (the same operations in the same order, without fused multiply-adds).
void pairwise_dots_forward(int device, const PairwiseDotsArgs& args, const float* z, float* out, Stream stream);
void pairwise_dots_backward(int device, const PairwiseDotsArgs& args, const float* z, const float* grad_out, float* grad_z,
                            Stream stream);

}  // namespace kintsugi::cuda
