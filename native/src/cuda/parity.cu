// Parity coding over device blocks: XOR (bit-exact) and weighted float sums.
//
// Memory-bound grid-stride kernels with 16-byte accesses. The block pointers live in device
// memory, so alignment is decided in the kernel: when every pointer (and the output) has the same
// offset modulo 16 bytes, the first few elements go one by one up to the 16-byte boundary and the
// rest as 16-byte vectors; otherwise everything goes element by element. The pointer list (and the
// coefficients) are staged in shared memory when they fit.
//
// The float sums give the same bits as the CPU kernels: each block's term c * b of two floats is
// exact in double, so accumulating in double in block order (first term assigned, not added to 0)
// rounds exactly where the CPU rounds, fused multiply-add or not; the decode's final multiply by
// 1 / missing (computed in double on the host) and the rounding to float match too.
#include <string>

#include "kernels.cuh"

namespace kintsugi::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxStaged = 2048;  // sources staged in shared memory (16 KiB of pointers)

// Sources of one call: for a decode, parity first (coefficient 1) then the available blocks with
// negated coefficients; for an encode, the blocks with their coefficients.
struct Sources {
  const void* const* list;  // device array of blocks
  const float* coeffs;      // nullable: ones
  const void* lead;         // decode: the parity, read first; encode: nullptr
  int count;                // total sources (list entries + 1 when lead)
  bool negate;              // decode: subtract the list's terms

  __device__ const void* ptr(int t) const { return lead ? (t == 0 ? lead : list[t - 1]) : list[t]; }
  __device__ double coeff(int t) const {
    if (lead && t == 0) return 1.0;
    const int i = lead ? t - 1 : t;
    const double c = coeffs ? double(coeffs[i]) : 1.0;
    return negate ? -c : c;
  }
};

// Stages the source pointers (and coefficients) in shared memory when they fit; `uniform` tells
// whether every source shares the output's offset modulo 16 bytes.
struct Staged {
  const void* const* ptrs;
  const double* coeffs;
  bool shared;
  unsigned offset;
  bool uniform;
};

template <bool kCoeffs>
__device__ Staged stage(const Sources& src, const void* out, const void** s_ptrs, double* s_coeffs) {
  Staged st;
  st.shared = src.count <= kMaxStaged;
  if (st.shared) {
    for (int t = threadIdx.x; t < src.count; t += blockDim.x) {
      s_ptrs[t] = src.ptr(t);
      if (kCoeffs) s_coeffs[t] = src.coeff(t);
    }
    __syncthreads();
  }
  st.ptrs = s_ptrs;
  st.coeffs = s_coeffs;
  st.offset = unsigned(reinterpret_cast<uintptr_t>(out) & 15u);
  uintptr_t diff = 0;
  for (int t = 0; t < src.count; ++t) {
    const void* p = st.shared ? s_ptrs[t] : src.ptr(t);
    diff |= (reinterpret_cast<uintptr_t>(p) & 15u) ^ st.offset;
  }
  st.uniform = diff == 0;
  return st;
}

__device__ __forceinline__ const void* source(const Staged& st, const Sources& src, int t) {
  return st.shared ? st.ptrs[t] : src.ptr(t);
}

// ---- XOR ----

__global__ void __launch_bounds__(kThreads) xor_kernel(Sources src, size_t len, uint8_t* parity) {
  extern __shared__ __align__(16) unsigned char smem[];
  const Staged st = stage<false>(src, parity, reinterpret_cast<const void**>(smem), nullptr);
  const size_t stride = size_t(gridDim.x) * kThreads, tid = size_t(blockIdx.x) * kThreads + threadIdx.x;
  const int k = src.count;
  size_t head = len, vecs = 0;
  if (st.uniform) {
    head = min(len, size_t((16u - st.offset) & 15u));
    vecs = (len - head) / 16;
  }
  // Bytes before the first 16-byte boundary (all of them when the offsets differ) and after the
  // last one.
  const size_t tail = head + vecs * 16;
  for (size_t i = tid; i < head + (len - tail); i += stride) {
    const size_t e = i < head ? i : tail + (i - head);
    uint8_t a = static_cast<const uint8_t*>(source(st, src, 0))[e];
    for (int t = 1; t < k; ++t) a ^= static_cast<const uint8_t*>(source(st, src, t))[e];
    parity[e] = a;
  }
  for (size_t v = tid; v < vecs; v += stride) {
    const size_t e = head + v * 16;
    uint4 a = *reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(source(st, src, 0)) + e);
#pragma unroll 4
    for (int t = 1; t < k; ++t) {
      const uint4 b = *reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(source(st, src, t)) + e);
      a.x ^= b.x;
      a.y ^= b.y;
      a.z ^= b.z;
      a.w ^= b.w;
    }
    *reinterpret_cast<uint4*>(parity + e) = a;
  }
}

// ---- weighted sums: out = scale * sum_t c_t * src_t (scale 1: encode, 1 / missing: decode) ----

__global__ void __launch_bounds__(kThreads) sum_kernel(Sources src, size_t len, double scale, bool scaled, float* out) {
  extern __shared__ __align__(16) unsigned char smem[];
  const Staged st = stage<true>(src, out, reinterpret_cast<const void**>(smem),
                                reinterpret_cast<double*>(smem + sizeof(void*) * size_t(src.count)));
  const size_t stride = size_t(gridDim.x) * kThreads, tid = size_t(blockIdx.x) * kThreads + threadIdx.x;
  const int k = src.count;
  auto coeff = [&](int t) { return st.shared ? st.coeffs[t] : src.coeff(t); };
  auto finish = [&](double acc) { return float(scaled ? acc * scale : acc); };
  size_t head = len, vecs = 0;
  if (st.uniform && (st.offset & 3u) == 0) {
    head = min(len, size_t(((16u - st.offset) & 15u) / 4u));
    vecs = (len - head) / 4;
  }
  const size_t tail = head + vecs * 4;
  for (size_t i = tid; i < head + (len - tail); i += stride) {
    const size_t e = i < head ? i : tail + (i - head);
    double acc = coeff(0) * double(static_cast<const float*>(source(st, src, 0))[e]);
    for (int t = 1; t < k; ++t) acc += coeff(t) * double(static_cast<const float*>(source(st, src, t))[e]);
    out[e] = finish(acc);
  }
  for (size_t v = tid; v < vecs; v += stride) {
    const size_t e = head + v * 4;
    const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(source(st, src, 0)) + e);
    const double c0 = coeff(0);
    double x = c0 * double(a.x), y = c0 * double(a.y), z = c0 * double(a.z), w = c0 * double(a.w);
#pragma unroll 4
    for (int t = 1; t < k; ++t) {
      const float4 b = *reinterpret_cast<const float4*>(static_cast<const float*>(source(st, src, t)) + e);
      const double c = coeff(t);
      x += c * double(b.x);
      y += c * double(b.y);
      z += c * double(b.z);
      w += c * double(b.w);
    }
    *reinterpret_cast<float4*>(out + e) = make_float4(finish(x), finish(y), finish(z), finish(w));
  }
}

unsigned grid_for(int device, size_t units) {
  // A grid-stride loop over `units` 16-byte vectors: a few waves of resident blocks.
  const size_t cap = size_t(multiprocessors(device)) * 8;
  const size_t want = (units + kThreads - 1) / kThreads;
  return unsigned(want < 1 ? 1 : (want > cap ? cap : want));
}

size_t staged_bytes(int count, bool coeffs) {
  const size_t n = size_t(count <= kMaxStaged ? count : 0);
  return n * (sizeof(void*) + (coeffs ? sizeof(double) : 0));  // pointers, then coefficients
}

void check_count(int k, const char* name) {
  if (k < 0) throw_expected(ErrorKind::Range, "a block count >= 0", name, std::to_string(k));
}

// The checks and the empty cases an encoder shares; false when there is nothing to launch
// (no bytes, or no blocks: the parity of nothing is zeros).
bool start_encode(int device, const void* blocks, int k, size_t len, void* parity, size_t parity_bytes, Stream stream) {
  check_count(k, "k");
  if (len == 0) return false;
  if (k > 0 && !blocks) throw_expected(ErrorKind::Type, std::to_string(k) + " device block pointers", "blocks", "null");
  if (!parity) throw_expected(ErrorKind::Type, "a parity buffer", "parity", "null");
  use_device(device);
  if (k > 0) return true;
  check(cudaMemsetAsync(parity, 0, parity_bytes, as_stream(stream)), "cudaMemsetAsync(parity)");
  return false;
}

}  // namespace

void xor_encode(int device, const uint8_t* const* blocks, int k, size_t len, uint8_t* parity, Stream stream) {
  if (!start_encode(device, blocks, k, len, parity, len, stream)) return;
  const cudaStream_t s = as_stream(stream);
  const Sources src{reinterpret_cast<const void* const*>(blocks), nullptr, nullptr, k, false};
  xor_kernel<<<grid_for(device, (len + 15) / 16), kThreads, staged_bytes(k, false), s>>>(src, len, parity);
  check_launch("xor_encode");
}

void sum_encode(int device, const float* const* blocks, const float* coeffs, int k, size_t len, float* parity, Stream stream) {
  if (!start_encode(device, blocks, k, len, parity, len * sizeof(float), stream)) return;
  const cudaStream_t s = as_stream(stream);
  const Sources src{reinterpret_cast<const void* const*>(blocks), coeffs, nullptr, k, false};
  sum_kernel<<<grid_for(device, (len + 3) / 4), kThreads, staged_bytes(k, true), s>>>(src, len, 1.0, false, parity);
  check_launch("sum_encode");
}

void sum_decode(int device, const float* parity, const float* const* available, const float* coeffs, int count,
                float missing_coeff, size_t len, float* out, Stream stream) {
  check_count(count, "count");
  if (!(missing_coeff != 0.0f) || missing_coeff - missing_coeff != 0.0f)  // zero, NaN or infinite
    throw_expected(ErrorKind::Range, "a finite non-zero coefficient", "missing_coeff", std::to_string(missing_coeff));
  if (len == 0) return;
  if (count > 0 && !available)
    throw_expected(ErrorKind::Type, std::to_string(count) + " device block pointers", "available", "null");
  if (!parity) throw_expected(ErrorKind::Type, "a parity buffer", "parity", "null");
  if (!out) throw_expected(ErrorKind::Type, "an output buffer", "out", "null");
  if (count == INT32_MAX) throw_expected(ErrorKind::Range, "fewer blocks", "count", std::to_string(count));
  use_device(device);
  const Sources src{reinterpret_cast<const void* const*>(available), coeffs, parity, count + 1, true};
  const double inv = 1.0 / double(missing_coeff);
  sum_kernel<<<grid_for(device, (len + 3) / 4), kThreads, staged_bytes(count + 1, true), as_stream(stream)>>>(src, len, inv,
                                                                                                               true, out);
  check_launch("sum_decode");
}

}  // namespace kintsugi::cuda
