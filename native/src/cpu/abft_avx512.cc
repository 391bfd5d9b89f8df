// AVX-512 helpers of checksum-protected sgemm (abft.cc): the per-tile checksum dot products run
// beside micro-kernels that keep the FMA units busy, so they must be vector code too (scalar
// versions cost 10x the 1-3% budget). Intrinsics and internal-linkage code only (see
// gemm_internal.h on ODR); one extern entry returns the table.
#include <immintrin.h>

#include "abft_internal.h"

namespace kintsugi {
namespace gemm_internal {
namespace {

// Sum of the 8 even and 8 odd lanes.
inline void pair_hsum(__m512 v, double* out2) {
  alignas(64) float l[16];
  _mm512_store_ps(l, v);
  double e = 0, o = 0;
  for (int i = 0; i < 16; i += 2) {
    e += l[i];
    o += l[i + 1];
  }
  out2[0] += e;
  out2[1] += o;
}

// out2 += (sum_p x[2p] y[2p], sum_p x[2p+1] y[2p+1]) for p < pairs.
void dot_pairs(const float* x, const float* y, int64_t pairs, double* out2) {
  const int64_t n = 2 * pairs;
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s0);
  }
  pair_hsum(_mm512_add_ps(s0, s1), out2);
}

// out2 += (sum_p a[p] yb[2p], sum_p |a[p]| yb[2p+1]) for contiguous a (the one-sided row check).
void dot_row(const float* a, const float* yb, int64_t k, double* out2) {
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; p += 16) {
    const __mmask16 m = k - p >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - p)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, a + p), w = _mm512_abs_ps(v);
    // (a, |a|) interleaved, matching yb's (value, magnitude) pairs.
    const __m512 x0 = _mm512_permutex2var_ps(v, lo, w), x1 = _mm512_permutex2var_ps(v, hi, w);
    const __mmask16 m0 = k - p >= 8 ? __mmask16(0xFFFF) : __mmask16((1u << (2 * (k - p))) - 1u);
    const __mmask16 m1 = k - p >= 16 ? __mmask16(0xFFFF) : k - p <= 8 ? __mmask16(0) : __mmask16((1u << (2 * (k - p - 8))) - 1u);
    s0 = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m0, yb + 2 * p), s0);
    s1 = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(m1, yb + 2 * p + 16), s1);
  }
  pair_hsum(_mm512_add_ps(s0, s1), out2);
}

// dst[2p] += a[p], dst[2p+1] += |a[p]| for contiguous a (column sums of an A panel).
void add_pairs(const float* a, int64_t k, float* dst) {
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    const __m512 v = _mm512_loadu_ps(a + p), w = _mm512_abs_ps(v);
    float* d = dst + 2 * p;
    _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), _mm512_permutex2var_ps(v, lo, w)));
    _mm512_storeu_ps(d + 16, _mm512_add_ps(_mm512_loadu_ps(d + 16), _mm512_permutex2var_ps(v, hi, w)));
  }
  for (; p < k; ++p) {
    dst[2 * p] += a[p];
    dst[2 * p + 1] += a[p] < 0 ? -a[p] : a[p];
  }
}

// dst[i] += src[i] for i < n.
void add_into(const float* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(dst + i), _mm512_loadu_ps(src + i)));
  for (; i < n; ++i) dst[i] += src[i];
}

const AbftKernels kSet = {"abft_avx512", &dot_pairs, &dot_row, &add_pairs, &add_into};

}  // namespace

const AbftKernels* abft_avx512_kernels() { return &kSet; }

}  // namespace gemm_internal
}  // namespace kintsugi
