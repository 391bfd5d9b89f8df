// The pairwise-dot interaction's loops with AVX-512 (see interaction_loops.h): 16 pairs or 16
// columns per vector, one multiply and one add per step (no fused multiply-add), in the portable
// loops' order, so the bits are the same. Written with intrinsics: GCC 12 unrolls the portable
// loops' 16-wide chunks into scalar code when it builds them for AVX-512.
#include <immintrin.h>

#include "interaction_loops.h"

namespace kintsugi::detail {

void pairwise_dots_forward_avx512(const PairwiseDotsArgs& a, const float* z, float* out, int64_t s0, int64_t s1, float* zt) {
  pairwise_forward_with(a, z, out, s0, s1, zt, [](const float* zi, const float* zt0, int64_t Vp, int64_t d, float* o, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < d; ++c) acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(zi[c]), _mm512_loadu_ps(zt0 + c * Vp)));
    _mm512_mask_storeu_ps(o, __mmask16((1u << n) - 1u), acc);
  });
}

void pairwise_dots_backward_avx512(const PairwiseDotsArgs& a, const float* z, const float* grad_out, float* grad_z, int64_t s0,
                                   int64_t s1, float* g) {
  pairwise_backward_with(a, z, grad_out, grad_z, s0, s1, g, [](const float* gi, const float* zc, int64_t V, int64_t d, int64_t skip, float* out, int64_t n) {
    const __mmask16 m = __mmask16((1u << n) - 1u);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < V; ++j) {
      if (j == skip) continue;
      acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(gi[j]), _mm512_maskz_loadu_ps(m, zc + j * d)));
    }
    _mm512_mask_storeu_ps(out, m, acc);
  });
}

}  // namespace kintsugi::detail
