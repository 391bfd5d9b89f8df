// AVX-512 helpers of checksum-protected sgemm (abft.cc): the per-tile checksum dot products run
// beside micro-kernels that keep the FMA units busy, so they must be vector code too (scalar
// versions cost 10x the 1-3% budget). Intrinsics and internal-linkage code only (see
// gemm_internal.h on ODR); one extern entry returns the table.
#include <immintrin.h>

#include <algorithm>

#include "abft_internal.h"

namespace kintsugi {
namespace gemm_internal {
namespace {

// Stores (v[0], w[0], v[1], w[1], ...): at most 32 floats, only the first `left` of them.
inline void store_pairs(__m512 v, __m512 w, int64_t left, float* dst) {
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const __mmask16 m0 = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
  const __mmask16 m1 = left >= 32 ? __mmask16(0xFFFF) : left <= 16 ? __mmask16(0) : __mmask16((1u << (left - 16)) - 1u);
  _mm512_mask_storeu_ps(dst, m0, _mm512_permutex2var_ps(v, lo, w));
  _mm512_mask_storeu_ps(dst + 16, m1, _mm512_permutex2var_ps(v, hi, w));
}

// dst[2p] = a[p], dst[2p+1] = |a[p]| (an A row as (value, magnitude) pairs).
void interleave_abs(const float* a, int64_t k, float* dst) {
  for (int64_t p = 0; p < k; p += 16) {
    const __mmask16 m = k - p >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - p)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, a + p), w = _mm512_abs_ps(v);
    store_pairs(v, w, 2 * (k - p), dst + 2 * p);
  }
}

// Column sums of consecutive A panels (rows summed in registers, each output written once). The
// panels advance together, 16 columns at a time, so the loads of all their rows are in flight at
// once (a panel's rows alone leave memory-level parallelism unused when A comes from memory).
void panel_sums(const float* a, int64_t rows, int mr, int64_t rs, int64_t ps, int64_t k, float* dst) {
  const int64_t panels = (rows + mr - 1) / mr;
  for (int64_t p = 0; p < k; p += 16) {
    const __mmask16 m = k - p >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - p)) - 1u);
    for (int64_t q = 0; q < panels; ++q) {
      const float* aq = a + q * ps + p;
      const int n = int(std::min<int64_t>(mr, rows - q * mr));
      __m512 v = _mm512_setzero_ps(), w = _mm512_setzero_ps();
      for (int i = 0; i < n; ++i) {
        const __m512 x = _mm512_maskz_loadu_ps(m, aq + i * rs);
        v = _mm512_add_ps(v, x);
        w = _mm512_add_ps(w, _mm512_abs_ps(x));
      }
      store_pairs(v, w, 2 * (k - p), dst + q * 2 * k + 2 * p);
    }
  }
}

// The maskz_ forms of the widening intrinsics below give the same results as the plain ones;
// GCC 12 warns that the plain ones read an uninitialised pass-through register.

// (value, magnitude) lanes of v (even, odd) summed in double into out2.
inline void add_pair_lanes(__m512 v, double* out2) {
  const __m256 h = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, v, 0), _mm512_maskz_extractf32x8_ps(0xFF, v, 1));
  const __m512d d = _mm512_maskz_cvtps_pd(0xFF, h);
  const __m256d f = _mm256_add_pd(_mm512_maskz_extractf64x4_pd(0xF, d, 0), _mm512_maskz_extractf64x4_pd(0xF, d, 1));
  const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(f), _mm256_extractf128_pd(f, 1));
  _mm_storeu_pd(out2, _mm_add_pd(_mm_loadu_pd(out2), q));
}

// R panels x G groups of dot_pairs at once: each x vector feeds G FMAs, each y vector R (4 x 4:
// 16 accumulators, half a load per FMA).
template <int R, int G>
inline void block_dots_rg(const float* x, int64_t xs, const float* y, int64_t ys, int64_t n, double* st, int64_t ss) {
  __m512 acc[R][G];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 xv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) xv[r] = _mm512_loadu_ps(x + r * xs + i);
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const __m512 yv = _mm512_loadu_ps(y + g * ys + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][g] = _mm512_fmadd_ps(xv[r], yv, acc[r][g]);
    }
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    __m512 xv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) xv[r] = _mm512_maskz_loadu_ps(m, x + r * xs + i);
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const __m512 yv = _mm512_maskz_loadu_ps(m, y + g * ys + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][g] = _mm512_fmadd_ps(xv[r], yv, acc[r][g]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) add_pair_lanes(acc[r][g], st + r * ss + 2 * g);
}

template <int R>
inline void block_dots_r(const float* x, int64_t xs, const float* y, int64_t groups, int64_t ys, int64_t n, double* st, int64_t ss) {
  int64_t g = 0;
  for (; g + 4 <= groups; g += 4) block_dots_rg<R, 4>(x, xs, y + g * ys, ys, n, st + 2 * g, ss);
  switch (groups - g) {
    case 3: block_dots_rg<R, 3>(x, xs, y + g * ys, ys, n, st + 2 * g, ss); break;
    case 2: block_dots_rg<R, 2>(x, xs, y + g * ys, ys, n, st + 2 * g, ss); break;
    case 1: block_dots_rg<R, 1>(x, xs, y + g * ys, ys, n, st + 2 * g, ss); break;
    default: break;
  }
}

void block_dots(const float* x, int64_t panels, int64_t xs, const float* y, int64_t groups, int64_t ys, int64_t pairs, double* st,
                int64_t ss) {
  const int64_t n = 2 * pairs;
  int64_t r = 0;
  for (; r + 4 <= panels; r += 4) block_dots_r<4>(x + r * xs, xs, y, groups, ys, n, st + r * ss, ss);
  switch (panels - r) {
    case 3: block_dots_r<3>(x + r * xs, xs, y, groups, ys, n, st + r * ss, ss); break;
    case 2: block_dots_r<2>(x + r * xs, xs, y, groups, ys, n, st + r * ss, ss); break;
    case 1: block_dots_r<1>(x + r * xs, xs, y, groups, ys, n, st + r * ss, ss); break;
    default: break;
  }
}

inline double reduce_pd(__m512d v) {
  const __m256d f = _mm256_add_pd(_mm512_maskz_extractf64x4_pd(0xF, v, 0), _mm512_maskz_extractf64x4_pd(0xF, v, 1));
  const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(f), _mm256_extractf128_pd(f, 1));
  return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}

// Two 8-lane double accumulators from 16 floats.
inline void add_widened(__m512 v, __m512d& lo, __m512d& hi) {
  lo = _mm512_add_pd(lo, _mm512_maskz_cvtps_pd(0xFF, _mm512_maskz_extractf32x8_ps(0xFF, v, 0)));
  hi = _mm512_add_pd(hi, _mm512_maskz_cvtps_pd(0xFF, _mm512_maskz_extractf32x8_ps(0xFF, v, 1)));
}

// Every element widened to double (the global check's row sums of C).
double sum_widened(const float* x, int64_t n) {
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    add_widened(_mm512_maskz_loadu_ps(m, x + i), lo, hi);
  }
  return reduce_pd(_mm512_add_pd(lo, hi));
}

// A tile's column sums: float partial sums of up to four vectors (64 columns: 3 adds) before
// widening; a few roundings of fp32 against a bound of 128 of them.
double sum(const float* x, int64_t n) {
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 64) {
    __m512 v = _mm512_setzero_ps();
    for (int64_t q = i; q < i + 64 && q < n; q += 16) {
      const __mmask16 m = n - q >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - q)) - 1u);
      v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, x + q));
    }
    add_widened(v, lo, hi);
  }
  return reduce_pd(_mm512_add_pd(lo, hi));
}

void row_check(const float* a, const double* bsum, const double* babs, int64_t k, const float* c, int64_t n, double* out3) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd(), m0 = _mm512_setzero_pd(), m1 = _mm512_setzero_pd();
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    const __m512 v = _mm512_loadu_ps(a + p);
    const __m512d lo = _mm512_maskz_cvtps_pd(0xFF, _mm512_maskz_extractf32x8_ps(0xFF, v, 0)), hi = _mm512_maskz_cvtps_pd(0xFF, _mm512_maskz_extractf32x8_ps(0xFF, v, 1));
    s0 = _mm512_fmadd_pd(lo, _mm512_loadu_pd(bsum + p), s0);
    s1 = _mm512_fmadd_pd(hi, _mm512_loadu_pd(bsum + p + 8), s1);
    m0 = _mm512_fmadd_pd(_mm512_abs_pd(lo), _mm512_loadu_pd(babs + p), m0);
    m1 = _mm512_fmadd_pd(_mm512_abs_pd(hi), _mm512_loadu_pd(babs + p + 8), m1);
  }
  for (; p < k; p += 8) {
    const __mmask8 m = k - p >= 8 ? __mmask8(0xFF) : __mmask8((1u << (k - p)) - 1u);
    const __m512d v = _mm512_maskz_cvtps_pd(0xFF, _mm256_maskz_loadu_ps(m, a + p));
    s0 = _mm512_fmadd_pd(v, _mm512_maskz_loadu_pd(m, bsum + p), s0);
    m0 = _mm512_fmadd_pd(_mm512_abs_pd(v), _mm512_maskz_loadu_pd(m, babs + p), m0);
  }
  out3[0] += reduce_pd(_mm512_add_pd(s0, s1));
  out3[1] += reduce_pd(_mm512_add_pd(m0, m1));
  out3[2] += sum_widened(c, n);
}

const AbftKernels kSet = {"abft_avx512", &interleave_abs, &panel_sums, &block_dots, &sum, &row_check};

}  // namespace

const AbftKernels* abft_avx512_kernels() { return &kSet; }

}  // namespace gemm_internal
}  // namespace kintsugi
