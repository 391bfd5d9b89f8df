// Element-wise conversion between float32, float16 and bfloat16. Every narrowing rounds to
// nearest-even (NaN stays NaN, infinities and signed zeros are kept, results below the normal
// range become denormals); fp16 <-> bf16 goes through float32, which holds both exactly.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "common.cuh"

namespace kintsugi::cuda {
namespace {

__device__ __forceinline__ float load_f(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float load_f(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store_f(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
__device__ __forceinline__ void store_f(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

// Four elements as one vector: 16 bytes of float, 8 bytes of a 16-bit type.
template <typename T> struct Vec4;
template <> struct Vec4<float> { using type = float4; };
template <> struct Vec4<__half> { using type = uint2; };
template <> struct Vec4<__nv_bfloat16> { using type = uint2; };

template <typename T> __device__ __forceinline__ void load4(const T* p, int64_t i4, float v[4]) {
  const typename Vec4<T>::type raw = reinterpret_cast<const typename Vec4<T>::type*>(p)[i4];
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = load_f(e, j);
}
template <typename T> __device__ __forceinline__ void store4(T* p, int64_t i4, const float v[4]) {
  typename Vec4<T>::type raw;
  T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int j = 0; j < 4; ++j) store_f(e, j, v[j]);
  reinterpret_cast<typename Vec4<T>::type*>(p)[i4] = raw;
}

// vector = true: both pointers are aligned to their 4-element vectors; the last count % 4
// elements are converted one by one.
template <typename S, typename D, bool kVector>
__global__ void __launch_bounds__(256) convert_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t count) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (kVector) {
    const int64_t vecs = count / 4;
    for (int64_t v = i; v < vecs; v += stride) {
      float f[4];
      load4(src, v, f);
      store4(dst, v, f);
    }
    for (int64_t e = vecs * 4 + i; e < count; e += stride) store_f(dst, e, load_f(src, e));
  } else {
    for (int64_t e = i; e < count; e += stride) store_f(dst, e, load_f(src, e));
  }
}

template <typename S, typename D> void launch(const void* src, void* dst, int64_t count, cudaStream_t stream) {
  const S* s = static_cast<const S*>(src);
  D* d = static_cast<D*>(dst);
  const bool vector = (reinterpret_cast<uintptr_t>(src) % (4 * sizeof(S)) == 0) &&
                      (reinterpret_cast<uintptr_t>(dst) % (4 * sizeof(D)) == 0);
  constexpr int kThreads = 256;
  if (vector) {
    convert_kernel<S, D, true><<<blocks_for((count + 3) / 4, kThreads), kThreads, 0, stream>>>(s, d, count);
  } else {
    convert_kernel<S, D, false><<<blocks_for(count, kThreads), kThreads, 0, stream>>>(s, d, count);
  }
  check_launch("convert");
}

}  // namespace

void convert(DType from, const void* src, DType to, void* dst, int64_t count, Stream stream) {
  if (count < 0) throw_expected(ErrorKind::Range, "a non-negative element count", "count", std::to_string(count));
  if (count == 0) return;
  if (!src) throw_expected(ErrorKind::Type, "a device buffer", "src", "null");
  if (!dst) throw_expected(ErrorKind::Type, "a device buffer", "dst", "null");
  const cudaStream_t s = as_stream(stream);
  if (from == to) {
    check(cudaMemcpyAsync(dst, src, size_t(count) * dtype_size(from), cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync(convert)");
    return;
  }
  using H = __half;
  using B = __nv_bfloat16;
  switch (from) {
    case DType::F32:
      if (to == DType::F16) return launch<float, H>(src, dst, count, s);
      return launch<float, B>(src, dst, count, s);
    case DType::F16:
      if (to == DType::F32) return launch<H, float>(src, dst, count, s);
      return launch<H, B>(src, dst, count, s);
    case DType::BF16:
      if (to == DType::F32) return launch<B, float>(src, dst, count, s);
      return launch<B, H>(src, dst, count, s);
  }
  throw Error(ErrorKind::Range, "convert: unknown dtype");
}

}  // namespace kintsugi::cuda
