// Embedding bags on the GPU: forward (sum / mean, optional per-index weights) and the scatter-add
// backward.
//
// A group of G lanes (a power of two up to a warp, sized to the row) owns one bag at a time and
// walks its columns, four floats per lane when rows are 16-byte aligned. Products and sums use
// the non-fusing intrinsics in the CPU's order, so the forward gives the CPU's bits. The backward
// adds with atomicAdd (repeated rows across bags and within a bag are safe); the order of the adds
// to one table element is then unspecified, so results match the CPU within rounding, and
// exactly when every update to an element is exact.
#include <string>

#include "kernels.cuh"

namespace kintsugi::cuda {
namespace {

constexpr int kThreads = 256;

struct Bags {
  const int32_t* indices;
  const int32_t* offsets;
  const float* weights;
  int64_t bags, dim;
  bool mean;
};

template <int kVec> struct VecT;
template <> struct VecT<1> { using type = float; };
template <> struct VecT<4> { using type = float4; };

__device__ __forceinline__ float fma_free(float acc, float w, float v) { return __fadd_rn(acc, __fmul_rn(w, v)); }

template <int kVec>
__global__ void __launch_bounds__(kThreads) forward_kernel(Bags a, int group, const float* __restrict__ table,
                                                           float* __restrict__ out) {
  using V = typename VecT<kVec>::type;
  const int64_t groups = int64_t(gridDim.x) * (kThreads / group);
  const int lane = threadIdx.x % group;
  const int64_t units = a.dim / kVec;
  for (int64_t b = int64_t(blockIdx.x) * (kThreads / group) + threadIdx.x / group; b < a.bags; b += groups) {
    const int64_t p0 = a.offsets[b], p1 = a.offsets[b + 1];
    const float inv = (a.mean && p1 > p0) ? 1.0f / float(p1 - p0) : 1.0f;
    for (int64_t u = lane; u < units; u += group) {
      float acc[kVec];
#pragma unroll
      for (int j = 0; j < kVec; ++j) acc[j] = 0.0f;
#pragma unroll 4
      for (int64_t p = p0; p < p1; ++p) {
        const V v = reinterpret_cast<const V*>(table + int64_t(a.indices[p]) * a.dim)[u];
        const float* f = reinterpret_cast<const float*>(&v);
        if (a.weights) {
          const float w = a.weights[p];
#pragma unroll
          for (int j = 0; j < kVec; ++j) acc[j] = fma_free(acc[j], w, f[j]);
        } else {
#pragma unroll
          for (int j = 0; j < kVec; ++j) acc[j] = __fadd_rn(acc[j], f[j]);
        }
      }
      if (a.mean && p1 > p0) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) acc[j] = __fmul_rn(acc[j], inv);
      }
      V r;
      float* rf = reinterpret_cast<float*>(&r);
#pragma unroll
      for (int j = 0; j < kVec; ++j) rf[j] = acc[j];
      reinterpret_cast<V*>(out + b * a.dim)[u] = r;
    }
  }
}

template <int kVec>
__global__ void __launch_bounds__(kThreads) backward_kernel(Bags a, int group, const float* __restrict__ grad_out, float scale,
                                                            float* grad_table) {
  using V = typename VecT<kVec>::type;
  const int64_t groups = int64_t(gridDim.x) * (kThreads / group);
  const int lane = threadIdx.x % group;
  const int64_t units = a.dim / kVec;
  for (int64_t b = int64_t(blockIdx.x) * (kThreads / group) + threadIdx.x / group; b < a.bags; b += groups) {
    const int64_t p0 = a.offsets[b], p1 = a.offsets[b + 1];
    if (p0 == p1) continue;
    // The CPU's factors: scale * (1 / count in mean mode), then times the index's weight.
    const float s = __fmul_rn(scale, a.mean ? 1.0f / float(p1 - p0) : 1.0f);
    for (int64_t u = lane; u < units; u += group) {
      const V g = reinterpret_cast<const V*>(grad_out + b * a.dim)[u];
      const float* gf = reinterpret_cast<const float*>(&g);
      for (int64_t p = p0; p < p1; ++p) {
        const float c = a.weights ? __fmul_rn(a.weights[p], s) : s;
        float* t = grad_table + int64_t(a.indices[p]) * a.dim + u * kVec;
#pragma unroll
        for (int j = 0; j < kVec; ++j) atomicAdd(t + j, __fmul_rn(c, gf[j]));
      }
    }
  }
}

void check_args(const EmbeddingBagArgs& a, const char* fn) {
  const std::string f(fn);
  auto str = [](int64_t v) { return std::to_string(v); };
  if (a.rows < 0) throw_expected(ErrorKind::Range, "a non-negative row count", f + " rows", str(a.rows));
  if (a.dim < 0) throw_expected(ErrorKind::Range, "a non-negative embedding dimension", f + " dim", str(a.dim));
  if (a.nnz < 0) throw_expected(ErrorKind::Range, "a non-negative index count", f + " nnz", str(a.nnz));
  if (a.bags < 0) throw_expected(ErrorKind::Range, "a non-negative bag count", f + " bags", str(a.bags));
  if (a.nnz > INT32_MAX) throw_expected(ErrorKind::Range, "at most " + str(INT32_MAX) + " indices (int32 offsets)", f + " nnz", str(a.nnz));
  if (a.mode != BagMode::Sum && a.mode != BagMode::Mean) throw_expected(ErrorKind::Range, "sum or mean", f + " mode", str(int64_t(a.mode)));
  if (a.nnz > 0 && !a.indices) throw_expected(ErrorKind::Type, str(a.nnz) + " device indices", f + " indices", "null");
  if (a.bags > 0 && !a.offsets) throw_expected(ErrorKind::Type, str(a.bags + 1) + " device offsets (bags + 1)", f + " offsets", "null");
}

Bags bags_of(const EmbeddingBagArgs& a) { return Bags{a.indices, a.offsets, a.weights, a.bags, a.dim, a.mode == BagMode::Mean}; }

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Lanes per bag: enough to cover a row in one pass (up to a warp).
int group_for(int64_t units) {
  int g = 1;
  while (g < 32 && g < units) g *= 2;
  return g;
}

}  // namespace

void embedding_bag_forward(int device, const EmbeddingBagArgs& args, const float* table, float* out, Stream stream) {
  check_args(args, "embedding_bag_forward");
  if (args.bags == 0 || args.dim == 0) return;
  if (args.nnz > 0 && !table) throw_expected(ErrorKind::Type, "a device table", "embedding_bag_forward table", "null");
  if (!out) throw_expected(ErrorKind::Type, "a device output", "embedding_bag_forward out", "null");
  use_device(device);
  const Bags a = bags_of(args);
  const bool vec = args.dim % 4 == 0 && aligned16(table) && aligned16(out);
  const int group = group_for(vec ? args.dim / 4 : args.dim);
  const unsigned grid = blocks_for(args.bags * group, kThreads);
  if (vec) forward_kernel<4><<<grid, kThreads, 0, as_stream(stream)>>>(a, group, table, out);
  else forward_kernel<1><<<grid, kThreads, 0, as_stream(stream)>>>(a, group, table, out);
  check_launch("embedding_bag_forward");
}

void embedding_bag_backward(int device, const EmbeddingBagArgs& args, const float* grad_out, float scale, float* grad_table,
                            Stream stream) {
  check_args(args, "embedding_bag_backward");
  if (args.nnz == 0 || args.dim == 0 || args.bags == 0) return;
  if (!grad_out) throw_expected(ErrorKind::Type, "a device gradient", "embedding_bag_backward grad_out", "null");
  if (!grad_table) throw_expected(ErrorKind::Type, "a device table gradient", "embedding_bag_backward grad_table", "null");
  use_device(device);
  const Bags a = bags_of(args);
  const bool vec = args.dim % 4 == 0 && aligned16(grad_out) && aligned16(grad_table);
  const int group = group_for(vec ? args.dim / 4 : args.dim);
  const unsigned grid = blocks_for(args.bags * group, kThreads);
  if (vec) backward_kernel<4><<<grid, kThreads, 0, as_stream(stream)>>>(a, group, grad_out, scale, grad_table);
  else backward_kernel<1><<<grid, kThreads, 0, as_stream(stream)>>>(a, group, grad_out, scale, grad_table);
  check_launch("embedding_bag_backward");
}

}  // namespace kintsugi::cuda
