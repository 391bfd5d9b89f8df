// Row / column checksums with fp64 accumulation (ABFT building blocks).
//
// Results depend only on the shape, never on the thread count: rows are summed independently,
// columns either by stripes of whole columns or by fixed row blocks whose partials are added in
// block order. Inner loops keep several independent double accumulators (or one per column) so
// the compiler can vectorise without reassociating a single sum.
#include "kintsugi/checksum.h"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels_internal.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace {

constexpr int64_t kParallelElements = 1 << 15;  // below this a checksum runs on the calling thread
constexpr int64_t kColumnBlock = 512;           // columns accumulated together (4 KiB of doubles)
constexpr int64_t kStripeColumns = 256;         // n at least this: parallel over column stripes

void check_matrix(const void* a, int64_t m, int64_t n, int64_t ld, const void* out, const char* fn) {
  if (m < 0) throw_expected(ErrorKind::Range, "m >= 0", "m", std::to_string(m));
  if (n < 0) throw_expected(ErrorKind::Range, "n >= 0", "n", std::to_string(n));
  if (m > 1 && ld < std::max<int64_t>(1, n))
    throw_expected(ErrorKind::Range, "a leading dimension >= " + std::to_string(std::max<int64_t>(1, n)), "ld",
                   std::to_string(ld));
  if (m > 0 && n > 0 && !a) throw_expected(ErrorKind::Type, "a matrix", std::string(fn) + " a", "null");
}

template <typename T> double sum_contiguous(const T* a, int64_t n) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) s[k] += double(a[j + k]);
  for (; j < n; ++j) s[0] += double(a[j]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

template <typename T> double dot_contiguous(const T* a, const T* w, int64_t n) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) s[k] += double(w[j + k]) * double(a[j + k]);
  for (; j < n; ++j) s[0] += double(w[j]) * double(a[j]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

template <typename T> void rows_impl(const T* a, int64_t m, int64_t n, int64_t ld, const T* weights, double* out) {
  const int64_t grain = std::max<int64_t>(1, kParallelElements / std::max<int64_t>(1, n));
  parallel_for(m, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = weights ? dot_contiguous(a + i * ld, weights, n) : sum_contiguous(a + i * ld, n);
  });
}

// acc[j - j0] += sum over rows [i0, i1) of (weights ? weights[i] : 1) * a[i, j] for j in [j0, j1).
template <typename T>
void accumulate_columns(const T* a, int64_t ld, const T* weights, int64_t i0, int64_t i1, int64_t j0, int64_t j1, double* acc) {
  for (int64_t b0 = j0; b0 < j1; b0 += kColumnBlock) {
    const int64_t b1 = std::min(j1, b0 + kColumnBlock), len = b1 - b0;
    double* dst = acc + (b0 - j0);
    // Four rows per pass: the accumulators are loaded and stored once per four rows instead of
    // once per row (the load-add-store chain, not memory, bounded the one-row loop at ~4 GB/s).
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) {
      const T *r0 = a + i * ld + b0, *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;
      if (weights) {
        const double w0 = double(weights[i]), w1 = double(weights[i + 1]), w2 = double(weights[i + 2]), w3 = double(weights[i + 3]);
        for (int64_t j = 0; j < len; ++j)
          dst[j] += (w0 * double(r0[j]) + w1 * double(r1[j])) + (w2 * double(r2[j]) + w3 * double(r3[j]));
      } else {
        for (int64_t j = 0; j < len; ++j) dst[j] += (double(r0[j]) + double(r1[j])) + (double(r2[j]) + double(r3[j]));
      }
    }
    for (; i < i1; ++i) {
      const T* row = a + i * ld + b0;
      if (weights) {
        const double wi = double(weights[i]);
        for (int64_t j = 0; j < len; ++j) dst[j] += wi * double(row[j]);
      } else {
        for (int64_t j = 0; j < len; ++j) dst[j] += double(row[j]);
      }
    }
  }
}

template <typename T> void cols_impl(const T* a, int64_t m, int64_t n, int64_t ld, const T* weights, double* out) {
  std::fill(out, out + n, 0.0);
  if (m == 0 || n == 0) return;
  if (n >= kStripeColumns || m * n < kParallelElements) {
    // Stripes of whole columns: each output is written by one thread, rows summed top to bottom.
    const int64_t grain = std::max<int64_t>(64, kParallelElements / m);
    parallel_for(n, grain, [&](int64_t j0, int64_t j1) { accumulate_columns(a, ld, weights, 0, m, j0, j1, out + j0); });
    return;
  }
  // Few, long columns: fixed row blocks (their number depends on the shape only), partials added
  // in block order.
  const int64_t blocks = std::min<int64_t>(64, std::max<int64_t>(1, m * n / kParallelElements));
  const int64_t rows_per_block = (m + blocks - 1) / blocks;
  std::vector<double> partial(size_t(blocks * n), 0.0);
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * rows_per_block, i1 = std::min(m, i0 + rows_per_block);
      if (i0 < i1) accumulate_columns(a, ld, weights, i0, i1, 0, n, partial.data() + b * n);
    }
  });
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < n; ++j) out[j] += partial[size_t(b * n + j)];
}

}  // namespace

template <typename T> void row_sums(const T* a, int64_t m, int64_t n, int64_t ld, double* out) {
  check_matrix(a, m, n, ld, out, "row_sums");
  detail::translate_bad_alloc("row_sums", [&] { rows_impl<T>(a, m, n, ld, nullptr, out); });
}

template <typename T> void col_sums(const T* a, int64_t m, int64_t n, int64_t ld, double* out) {
  check_matrix(a, m, n, ld, out, "col_sums");
  detail::translate_bad_alloc("col_sums", [&] { cols_impl<T>(a, m, n, ld, nullptr, out); });
}

template <typename T> void weighted_row_sums(const T* a, int64_t m, int64_t n, int64_t ld, const T* weights, double* out) {
  check_matrix(a, m, n, ld, out, "weighted_row_sums");
  if (m > 0 && n > 0 && !weights) throw_expected(ErrorKind::Type, "n weights", "weighted_row_sums weights", "null");
  detail::translate_bad_alloc("weighted_row_sums", [&] { rows_impl<T>(a, m, n, ld, weights, out); });
}

template <typename T> void weighted_col_sums(const T* a, int64_t m, int64_t n, int64_t ld, const T* weights, double* out) {
  check_matrix(a, m, n, ld, out, "weighted_col_sums");
  if (m > 0 && n > 0 && !weights) throw_expected(ErrorKind::Type, "m weights", "weighted_col_sums weights", "null");
  detail::translate_bad_alloc("weighted_col_sums", [&] { cols_impl<T>(a, m, n, ld, weights, out); });
}

template void row_sums<float>(const float*, int64_t, int64_t, int64_t, double*);
template void row_sums<double>(const double*, int64_t, int64_t, int64_t, double*);
template void col_sums<float>(const float*, int64_t, int64_t, int64_t, double*);
template void col_sums<double>(const double*, int64_t, int64_t, int64_t, double*);
template void weighted_row_sums<float>(const float*, int64_t, int64_t, int64_t, const float*, double*);
template void weighted_row_sums<double>(const double*, int64_t, int64_t, int64_t, const double*, double*);
template void weighted_col_sums<float>(const float*, int64_t, int64_t, int64_t, const float*, double*);
template void weighted_col_sums<double>(const double*, int64_t, int64_t, int64_t, const double*, double*);

}  // namespace kintsugi
