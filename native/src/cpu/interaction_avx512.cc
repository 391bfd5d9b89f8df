// The pairwise-dot interaction's loops with AVX-512 (see interaction_loops.h): 16 pairs or 16
// columns per vector, one multiply and one add per step (no fused multiply-add), in the portable
// loops' order, so the bits are the same. Written with intrinsics: GCC 12 unrolls the portable
// loops' 16-wide chunks into scalar code when it builds them for AVX-512.
#include <immintrin.h>

#include "interaction_loops.h"

namespace kintsugi::detail {

void pairwise_dots_forward_avx512(const PairwiseDotsArgs& a, const float* z, float* out, int64_t s0, int64_t s1, float* zt) {
  const int64_t V = a.vectors, d = a.dim, P = a.pairs(), Vp = padded_vectors(V);
  std::fill(zt, zt + d * Vp, 0.0f);
  for (int64_t s = s0; s < s1; ++s) {
    const float* zs = z + s * V * d;
    transpose_sample(zs, V, d, Vp, zt);
    float* o = out + s * P;
    for (int64_t i = a.self ? 0 : 1; i < V; ++i) {
      const int64_t count = a.self ? i + 1 : i;
      const float* zi = zs + i * d;
      for (int64_t j0 = 0; j0 < count; j0 += kChunk) {
        __m512 acc = _mm512_setzero_ps();
        for (int64_t c = 0; c < d; ++c) acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(zi[c]), _mm512_loadu_ps(zt + c * Vp + j0)));
        const int64_t n = std::min(kChunk, count - j0);
        _mm512_mask_storeu_ps(o + j0, __mmask16((1u << n) - 1u), acc);
      }
      o += count;
    }
  }
}

void pairwise_dots_backward_avx512(const PairwiseDotsArgs& a, const float* z, const float* grad_out, float* grad_z, int64_t s0,
                                   int64_t s1, float* g) {
  const int64_t V = a.vectors, d = a.dim, P = a.pairs();
  for (int64_t s = s0; s < s1; ++s) {
    symmetric_pair_grads(grad_out + s * P, V, a.self, g);
    const float* zs = z + s * V * d;
    float* gz = grad_z + s * V * d;
    for (int64_t i = 0; i < V; ++i)
      for (int64_t c0 = 0; c0 < d; c0 += kChunk) {
        const int64_t n = std::min(kChunk, d - c0);
        const __mmask16 m = __mmask16((1u << n) - 1u);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t j = 0; j < V; ++j) {
          if (j == i && !a.self) continue;  // without self a vector is in no pair with itself
          acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(g[i * V + j]), _mm512_maskz_loadu_ps(m, zs + j * d + c0)));
        }
        _mm512_mask_storeu_ps(gz + i * d + c0, m, acc);
      }
  }
}

}  // namespace kintsugi::detail
