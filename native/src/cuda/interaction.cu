// The pairwise-dot interaction of DLRM on the GPU (see embedding.h): a thread per output element,
// a dot per (sample, pair) in the forward and a (sample, vector, column) gradient in the backward.
// Products and sums use the non-fusing intrinsics in the CPU's order (ascending columns, ascending
// partner vectors), so results are the CPU's bits.
#include <cmath>
#include <string>

#include "kernels.cuh"

namespace kintsugi::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float fma_free(float acc, float a, float b) { return __fadd_rn(acc, __fmul_rn(a, b)); }

// Position of pair (i, j), j < i (or j <= i with self), in the row-by-row lower triangle.
__device__ __forceinline__ int64_t pair_index(int64_t i, int64_t j, bool self) { return (self ? i * (i + 1) : i * (i - 1)) / 2 + j; }

// The pair at position p: the row i whose first pair is the last one at or before p.
__device__ __forceinline__ void pair_at(int64_t p, bool self, int64_t& i, int64_t& j) {
  const double r = self ? (sqrt(8.0 * double(p) + 1.0) - 1.0) / 2.0 : (sqrt(8.0 * double(p) + 1.0) + 1.0) / 2.0;
  i = int64_t(r);
  while (pair_index(i, 0, self) > p) --i;
  while (pair_index(i + 1, 0, self) <= p) ++i;
  j = p - pair_index(i, 0, self);
}

__global__ void __launch_bounds__(kThreads) forward_kernel(PairwiseDotsArgs a, int64_t pairs, const float* __restrict__ z,
                                                           float* __restrict__ out) {
  const int64_t total = a.n * pairs, stride = int64_t(gridDim.x) * kThreads;
  for (int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x; t < total; t += stride) {
    const int64_t s = t / pairs;
    int64_t i, j;
    pair_at(t - s * pairs, a.self, i, j);
    const float* zi = z + (s * a.vectors + i) * a.dim;
    const float* zj = z + (s * a.vectors + j) * a.dim;
    float acc = 0.0f;
    for (int64_t c = 0; c < a.dim; ++c) acc = fma_free(acc, zi[c], zj[c]);
    out[t] = acc;
  }
}

__global__ void __launch_bounds__(kThreads) backward_kernel(PairwiseDotsArgs a, int64_t pairs, const float* __restrict__ z,
                                                            const float* __restrict__ grad_out, float* __restrict__ grad_z) {
  const int64_t per_sample = a.vectors * a.dim, total = a.n * per_sample, stride = int64_t(gridDim.x) * kThreads;
  for (int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x; t < total; t += stride) {
    const int64_t s = t / per_sample, i = (t - s * per_sample) / a.dim, c = t - s * per_sample - i * a.dim;
    const float* go = grad_out + s * pairs;
    const float* zs = z + s * per_sample + c;
    float acc = 0.0f;
    for (int64_t j = 0; j < a.vectors; ++j) {
      float w;
      if (j < i) w = go[pair_index(i, j, a.self)];
      else if (j > i) w = go[pair_index(j, i, a.self)];
      else if (a.self) w = __fadd_rn(go[pair_index(i, i, true)], go[pair_index(i, i, true)]);
      else continue;  // without self a vector is in no pair with itself
      acc = fma_free(acc, w, zs[j * a.dim]);
    }
    grad_z[t] = acc;
  }
}

}  // namespace

void pairwise_dots_forward(int device, const PairwiseDotsArgs& args, const float* z, float* out, Stream stream) {
  check_pairwise_dots(args);
  const int64_t pairs = args.pairs();
  if (args.n == 0 || pairs == 0) return;
  if (!out) throw_expected(ErrorKind::Type, "a device output", "pairwise_dots_forward out", "null");
  if (!z && args.dim > 0) throw_expected(ErrorKind::Type, "device vectors", "pairwise_dots_forward z", "null");
  use_device(device);
  forward_kernel<<<blocks_for(args.n * pairs, kThreads), kThreads, 0, as_stream(stream)>>>(args, pairs, z, out);
  check_launch("pairwise_dots_forward");
}

void pairwise_dots_backward(int device, const PairwiseDotsArgs& args, const float* z, const float* grad_out, float* grad_z,
                            Stream stream) {
  check_pairwise_dots(args);
  if (args.n == 0 || args.vectors == 0 || args.dim == 0) return;
  if (!z || !grad_z) throw_expected(ErrorKind::Type, "device vectors and their gradient", "pairwise_dots_backward z, grad_z", "null");
  if (!grad_out && args.pairs() > 0) throw_expected(ErrorKind::Type, "a device gradient", "pairwise_dots_backward grad_out", "null");
  use_device(device);
  backward_kernel<<<blocks_for(args.n * args.vectors * args.dim, kThreads), kThreads, 0, as_stream(stream)>>>(args, args.pairs(), z,
                                                                                                            grad_out, grad_z);
  check_launch("pairwise_dots_backward");
}

}  // namespace kintsugi::cuda
