// The pairwise-dot interaction of DLRM (see embedding.h), forward and backward. Samples are
// independent, so the pool splits them; within a sample the forward computes one row of the
// triangle at a time against a transposed copy of the sample's vectors, so the inner loop runs
// over pairs (contiguous, vectorised by the compiler) rather than reducing across a dot.
#include <algorithm>
#include <string>
#include <vector>

#include "kintsugi/embedding.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace {

constexpr int64_t kParallelWork = 1 << 15;  // multiply-adds below which one thread does it

int64_t grain(const PairwiseDotsArgs& a, int64_t per_sample) {
  return std::max<int64_t>(1, kParallelWork / std::max<int64_t>(1, per_sample));
}

}  // namespace

void check_pairwise_dots(const PairwiseDotsArgs& a) {
  if (a.n < 0 || a.vectors < 0 || a.dim < 0)
    throw_expected(ErrorKind::Range, "non-negative n, vectors and dim", "pairwise dots",
                   std::to_string(a.n) + " x " + std::to_string(a.vectors) + " x " + std::to_string(a.dim));
}

void pairwise_dots_forward(const PairwiseDotsArgs& a, const float* z, float* out) {
  check_pairwise_dots(a);
  const int64_t V = a.vectors, d = a.dim, P = a.pairs();
  if (a.n == 0 || P == 0) return;
  parallel_for(a.n, grain(a, P * d), [&](int64_t s0, int64_t s1) {
    std::vector<float> zt(size_t(d * V));  // zt[c][j] = z[s, j, c]
    for (int64_t s = s0; s < s1; ++s) {
      const float* zs = z + s * V * d;
      for (int64_t j = 0; j < V; ++j)
        for (int64_t c = 0; c < d; ++c) zt[size_t(c * V + j)] = zs[j * d + c];
      float* o = out + s * P;
      for (int64_t i = a.self ? 0 : 1; i < V; ++i) {
        const int64_t count = a.self ? i + 1 : i;
        std::fill(o, o + count, 0.0f);
        const float* zi = zs + i * d;
        for (int64_t c = 0; c < d; ++c) {
          const float x = zi[c];
          const float* row = zt.data() + c * V;
          for (int64_t j = 0; j < count; ++j) o[j] += x * row[j];
        }
        o += count;
      }
    }
  });
}

void pairwise_dots_backward(const PairwiseDotsArgs& a, const float* z, const float* grad_out, float* grad_z) {
  check_pairwise_dots(a);
  const int64_t V = a.vectors, d = a.dim, P = a.pairs();
  if (a.n == 0 || V == 0 || d == 0) return;
  parallel_for(a.n, grain(a, V * V * d), [&](int64_t s0, int64_t s1) {
    std::vector<float> g(size_t(V * V));  // G + G^T of one sample
    for (int64_t s = s0; s < s1; ++s) {
      std::fill(g.begin(), g.end(), 0.0f);
      const float* go = grad_out + s * P;
      for (int64_t i = a.self ? 0 : 1; i < V; ++i)
        for (int64_t j = 0; j < (a.self ? i + 1 : i); ++j) {
          const float v = *go++;
          g[size_t(i * V + j)] += v;
          g[size_t(j * V + i)] += v;
        }
      const float* zs = z + s * V * d;
      float* gz = grad_z + s * V * d;
      for (int64_t i = 0; i < V; ++i) {
        float* gi = gz + i * d;
        std::fill(gi, gi + d, 0.0f);
        // Zero weights are not skipped (a NaN or Inf in z reaches every gradient of a pair it is
        // in), but without `self` the diagonal is no pair: a vector's own values stay out.
        for (int64_t j = 0; j < V; ++j) {
          if (j == i && !a.self) continue;
          const float w = g[size_t(i * V + j)];
          const float* zj = zs + j * d;
          for (int64_t c = 0; c < d; ++c) gi[c] += w * zj[c];
        }
      }
    }
  });
}

}  // namespace kintsugi
