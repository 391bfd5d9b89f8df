// The per-sample loops of the pairwise-dot interaction (interaction.cc), for any x86-64 (and other
// CPUs), and their shared pieces, which interaction_avx512.cc's AVX-512 loops use too. Both files
// are built without contraction into fused multiply-adds and sum in the same order, so every ISA
// gives the same bits (and so do the GPU's kernels, which use the same operations in that order).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kintsugi/embedding.h"

namespace kintsugi {
namespace detail {

// Defined in interaction_avx512.cc (x86-64 builds only).
void pairwise_dots_forward_avx512(const PairwiseDotsArgs& a, const float* z, float* out, int64_t s0, int64_t s1, float* zt);
void pairwise_dots_backward_avx512(const PairwiseDotsArgs& a, const float* z, const float* grad_out, float* grad_z, int64_t s0,
                                   int64_t s1, float* g);

}  // namespace detail

namespace {  // each including file gets its own copy, built for its own ISA

// Pairs (forward) and columns (backward) are computed 16 at a time in fixed-length loops, whose
// accumulators the compiler keeps in registers (one AVX-512 vector, or four SSE ones); each output
// element still sums in the same order (ascending columns, ascending partner vectors).
constexpr int64_t kChunk = 16;

inline int64_t padded_vectors(int64_t vectors) { return (vectors + kChunk - 1) / kChunk * kChunk; }

// zt[c][j] = zs[j][c] (vectors padded to Vp, the padding left as it is: zero).
[[gnu::always_inline]] inline void transpose_sample(const float* zs, int64_t V, int64_t d, int64_t Vp, float* zt) {
  for (int64_t j = 0; j < V; ++j)
    for (int64_t c = 0; c < d; ++c) zt[c * Vp + j] = zs[j * d + c];
}

// g = G + G^T for one sample (V x V), G holding the sample's pair gradients at the pairs' places.
[[gnu::always_inline]] inline void symmetric_pair_grads(const float* go, int64_t V, bool self, float* g) {
  std::fill(g, g + V * V, 0.0f);
  for (int64_t i = self ? 0 : 1; i < V; ++i)
    for (int64_t j = 0; j < (self ? i + 1 : i); ++j) {
      const float v = *go++;
      g[i * V + j] += v;
      g[j * V + i] += v;
    }
}

// Samples [s0, s1); zt: dim * padded_vectors(vectors) floats of scratch. dots(zi, zt, Vp, d, o, n)
// writes the n (<= 16) dots of vector zi with the 16 vectors whose columns start at zt.
template <typename Dots>
[[gnu::always_inline]] inline void pairwise_forward_with(const PairwiseDotsArgs& a, const float* z, float* out, int64_t s0, int64_t s1,
                                                         float* zt, Dots dots) {
  const int64_t V = a.vectors, d = a.dim, P = a.pairs(), Vp = padded_vectors(V);
  std::fill(zt, zt + d * Vp, 0.0f);
  for (int64_t s = s0; s < s1; ++s) {
    const float* zs = z + s * V * d;
    transpose_sample(zs, V, d, Vp, zt);
    float* o = out + s * P;
    for (int64_t i = a.self ? 0 : 1; i < V; ++i) {
      const int64_t count = a.self ? i + 1 : i;
      for (int64_t j0 = 0; j0 < count; j0 += kChunk) dots(zs + i * d, zt + j0, Vp, d, o + j0, std::min(kChunk, count - j0));
      o += count;
    }
  }
}

// Samples [s0, s1); g: vectors * vectors floats of scratch. grads(g_i, zs, V, d, skip, out, n)
// writes n (<= 16) columns of sum_j g_i[j] * zs[j] (j ascending, vector `skip` left out) from the
// column zs and out point at.
template <typename Grads>
[[gnu::always_inline]] inline void pairwise_backward_with(const PairwiseDotsArgs& a, const float* z, const float* grad_out, float* grad_z,
                                                          int64_t s0, int64_t s1, float* g, Grads grads) {
  const int64_t V = a.vectors, d = a.dim, P = a.pairs();
  for (int64_t s = s0; s < s1; ++s) {
    symmetric_pair_grads(grad_out + s * P, V, a.self, g);
    const float* zs = z + s * V * d;
    float* gz = grad_z + s * V * d;
    // Zero weights are not skipped (a NaN or Inf in z reaches every gradient of a pair it is
    // in), but without `self` the diagonal is no pair: a vector's own values stay out.
    for (int64_t i = 0; i < V; ++i)
      for (int64_t c0 = 0; c0 < d; c0 += kChunk) grads(g + i * V, zs + c0, V, d, a.self ? -1 : i, gz + i * d + c0, std::min(kChunk, d - c0));
  }
}

// The portable chunks: fixed-length loops the compiler keeps in registers.
[[gnu::always_inline]] inline void pairwise_forward_samples(const PairwiseDotsArgs& a, const float* z, float* out, int64_t s0,
                                                            int64_t s1, float* zt) {
  pairwise_forward_with(a, z, out, s0, s1, zt, [](const float* zi, const float* zt0, int64_t Vp, int64_t d, float* o, int64_t n) {
    float acc[kChunk] = {};
    for (int64_t c = 0; c < d; ++c) {
      const float x = zi[c];
      const float* row = zt0 + c * Vp;
      for (int64_t j = 0; j < kChunk; ++j) acc[j] += x * row[j];
    }
    std::copy(acc, acc + n, o);
  });
}

[[gnu::always_inline]] inline void pairwise_backward_samples(const PairwiseDotsArgs& a, const float* z, const float* grad_out,
                                                             float* grad_z, int64_t s0, int64_t s1, float* g) {
  pairwise_backward_with(a, z, grad_out, grad_z, s0, s1, g, [](const float* gi, const float* zc, int64_t V, int64_t d, int64_t skip, float* out, int64_t n) {
    float acc[kChunk] = {};
    // A whole chunk sums in a loop of constant length, which the compiler vectorises; a last,
    // shorter one in the same order, in a loop of its length.
    auto sum = [&](auto len) {
      for (int64_t j = 0; j < V; ++j) {
        if (j == skip) continue;
        const float w = gi[j];
        const float* zj = zc + j * d;
        for (int64_t c = 0; c < int64_t(len); ++c) acc[c] += w * zj[c];
      }
    };
    if (n == kChunk) sum(std::integral_constant<int64_t, kChunk>{});
    else sum(n);
    std::copy(acc, acc + n, out);
  });
}

}  // namespace
}  // namespace kintsugi
