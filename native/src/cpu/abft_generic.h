// Check helpers of checksum-protected sgemm (AbftKernels) in plain C++, written so the compiler
// vectorises them: abft.cc compiles them for the baseline ISA (the portable table) and
// abft_avx2.cc with AVX2 + FMA (on AVX2-only CPUs the baseline's 128-bit code made one-sided
// checks cost +56-72% at 1024^3). Internal linkage only: each including file gets its own copies
// (see gemm_internal.h on ODR). Dot products keep float partial sums in independent lanes (no
// reassociation flags needed), summed in double at the end.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "abft_internal.h"

namespace kintsugi {
namespace gemm_internal {
namespace {

// dst[2p] = a[p * p_stride], dst[2p+1] = |a[p * p_stride]|: an A row as (value, magnitude)
// pairs. The strided forms also serve packed A (p_stride = mr) on every ISA.
[[maybe_unused]] void interleave_abs_strided(const float* a, int64_t p_stride, int64_t k, float* dst) {
  for (int64_t p = 0; p < k; ++p) {
    dst[2 * p] = a[p * p_stride];
    dst[2 * p + 1] = std::fabs(a[p * p_stride]);
  }
}
void interleave_abs_generic(const float* a, int64_t k, float* dst) { interleave_abs_strided(a, 1, k, dst); }
[[maybe_unused]] void panel_sums_strided(const float* a, int64_t rows, int mr, int64_t row_stride, int64_t p_stride, int64_t panel_stride, int64_t k,
                        float* dst) {
  for (int64_t q = 0; q * mr < rows; ++q) {
    const float* aq = a + q * panel_stride;
    const int n = int(std::min<int64_t>(mr, rows - q * mr));
    for (int64_t p = 0; p < k; ++p) {
      float v = 0, w = 0;
      for (int i = 0; i < n; ++i) {
        v += aq[i * row_stride + p * p_stride];
        w += std::fabs(aq[i * row_stride + p * p_stride]);
      }
      dst[q * 2 * k + 2 * p] = v;
      dst[q * 2 * k + 2 * p + 1] = w;
    }
  }
}
// Contiguous rows: the row loop outside, so each pass over p is a vector loop.
void panel_sums_generic(const float* a, int64_t rows, int mr, int64_t row_stride, int64_t panel_stride, int64_t k, float* dst) {
  for (int64_t q = 0; q * mr < rows; ++q) {
    const float* aq = a + q * panel_stride;
    const int n = int(std::min<int64_t>(mr, rows - q * mr));
    float* d = dst + q * 2 * k;
    std::fill(d, d + 2 * k, 0.0f);
    for (int i = 0; i < n; ++i) {
      const float* row = aq + i * row_stride;
      for (int64_t p = 0; p < k; ++p) {
        d[2 * p] += row[p];
        d[2 * p + 1] += std::fabs(row[p]);
      }
    }
  }
}

// R x-rows against G y-rows at once, 8 lanes each: every loaded chunk of x feeds G dots and every
// chunk of y R dots (one dot at a time would load two floats per multiply-add). Lanes alternate
// value / magnitude, as the pairs do.
template <int R, int G>
void block_dots_tile(const float* x, int64_t xs, const float* y, int64_t ys, int64_t n, double* st, int64_t ss) {
  float acc[R][G][8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int r = 0; r < R; ++r)
      for (int g = 0; g < G; ++g)
        for (int l = 0; l < 8; ++l) acc[r][g][l] += x[r * xs + i + l] * y[g * ys + i + l];
  for (; i < n; ++i)
    for (int r = 0; r < R; ++r)
      for (int g = 0; g < G; ++g) acc[r][g][i & 7] += x[r * xs + i] * y[g * ys + i];
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < G; ++g) {
      double* out = st + r * ss + 2 * g;
      for (int l = 0; l < 8; l += 2) {
        out[0] += acc[r][g][l];
        out[1] += acc[r][g][l + 1];
      }
    }
}
void block_dots_generic(const float* x, int64_t panels, int64_t xs, const float* y, int64_t groups, int64_t ys, int64_t pairs, double* st,
                        int64_t ss) {
  const int64_t n = 2 * pairs;
  int64_t r = 0;
  for (; r + 4 <= panels; r += 4) {
    int64_t g = 0;
    for (; g + 2 <= groups; g += 2) block_dots_tile<4, 2>(x + r * xs, xs, y + g * ys, ys, n, st + r * ss + 2 * g, ss);
    for (; g < groups; ++g) block_dots_tile<4, 1>(x + r * xs, xs, y + g * ys, ys, n, st + r * ss + 2 * g, ss);
  }
  for (; r < panels; ++r)
    for (int64_t g = 0; g < groups; ++g) block_dots_tile<1, 1>(x + r * xs, xs, y + g * ys, ys, n, st + r * ss + 2 * g, ss);
}
// Four independent partial sums in double: the dependency chain of one would cost 4x the latency.
double sum_generic(const float* x, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) s[l] += x[i + l];
  for (; i < n; ++i) s[0] += x[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}
void row_check_generic(const float* a, const double* bsum, const double* babs, int64_t k, const float* c, int64_t n, double* out3) {
  double s[4] = {0, 0, 0, 0}, m[4] = {0, 0, 0, 0};
  int64_t p = 0;
  for (; p + 4 <= k; p += 4)
    for (int l = 0; l < 4; ++l) {
      s[l] += double(a[p + l]) * bsum[p + l];
      m[l] += std::fabs(double(a[p + l])) * babs[p + l];
    }
  for (; p < k; ++p) {
    s[0] += double(a[p]) * bsum[p];
    m[0] += std::fabs(double(a[p])) * babs[p];
  }
  out3[0] += (s[0] + s[1]) + (s[2] + s[3]);
  out3[1] += (m[0] + m[1]) + (m[2] + m[3]);
  out3[2] += sum_generic(c, n);
}

// This file's table of the helpers, under `name`.
AbftKernels generic_abft_kernels(const char* name) {
  return {name, &interleave_abs_generic, &panel_sums_generic, &block_dots_generic, &sum_generic, &row_check_generic};
}

}  // namespace
}  // namespace gemm_internal
}  // namespace kintsugi
