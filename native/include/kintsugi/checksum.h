// Checksums of row-major matrices with fp64 accumulation: the building blocks of ABFT.
#pragma once
#include <cstdint>

namespace kintsugi {

// out[i] = sum_j a[i*ld + j] (m outputs).
template <typename T> void row_sums(const T* a, int64_t m, int64_t n, int64_t ld, double* out);
// out[j] = sum_i a[i*ld + j] (n outputs).
template <typename T> void col_sums(const T* a, int64_t m, int64_t n, int64_t ld, double* out);
// out[i] = sum_j weights[j] * a[i*ld + j] (m outputs).
template <typename T> void weighted_row_sums(const T* a, int64_t m, int64_t n, int64_t ld, const T* weights, double* out);
// out[j] = sum_i weights[i] * a[i*ld + j] (n outputs).
template <typename T> void weighted_col_sums(const T* a, int64_t m, int64_t n, int64_t ld, const T* weights, double* out);

}  // namespace kintsugi
