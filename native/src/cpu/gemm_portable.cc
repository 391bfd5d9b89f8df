// Portable sgemm micro-kernel: plain C++ the compiler vectorises for the baseline ISA (SSE2 on
// x86-64). Main tile 4 x 16; any tile up to 8 x 32 goes through the generic loop.
#include "gemm_internal.h"

namespace kintsugi {
namespace gemm_internal {
namespace {

constexpr int kMaxRows = 8, kMaxCols = 32;

void store(const MicroTile& t, const float* acc, int acc_ld) {
  const bool read_c = t.beta != 0.0f;
  if (t.col_sums)
    for (int j = 0; j < t.nr; ++j) t.col_sums[j] = 0.0f;
  for (int i = 0; i < t.mr; ++i) {
    float* c = t.c + i * t.ldc;
    const float* r = acc + i * acc_ld;
    float row = 0.0f;
    for (int j = 0; j < t.nr; ++j) {
      float v = t.alpha * r[j];
      if (read_c) v += t.beta * c[j];
      c[j] = v;
      row += v;
      if (t.col_sums) t.col_sums[j] += v;
    }
    if (t.row_sums) t.row_sums[i] = row;
  }
}

// The full 4 x 16 tile with fixed trip counts, so the inner loops vectorise.
void tile_4x16(const MicroTile& t) {
  float acc[4][16] = {};
  const float* a = t.a;
  const float* b = t.b;
  for (int64_t p = 0; p < t.k; ++p) {
    for (int i = 0; i < 4; ++i) {
      const float ai = a[i];
      for (int j = 0; j < 16; ++j) acc[i][j] += ai * b[j];
    }
    a += t.a_stride;
    b += t.b_stride;
  }
  store(t, &acc[0][0], 16);
}

void tile_generic(const MicroTile& t) {
  float acc[kMaxRows][kMaxCols] = {};
  const float* a = t.a;
  const float* b = t.b;
  const int mr = t.mr, nr = t.nr;
  for (int64_t p = 0; p < t.k; ++p) {
    for (int i = 0; i < mr; ++i) {
      const float ai = a[i * t.a_row_stride];
      for (int j = 0; j < nr; ++j) acc[i][j] += ai * b[j];
    }
    a += t.a_stride;
    b += t.b_stride;
  }
  store(t, &acc[0][0], kMaxCols);
}

void micro(const MicroTile& t) {
  if (t.mr == 4 && t.nr == 16 && t.a_row_stride == 1)
    tile_4x16(t);
  else
    tile_generic(t);
}

// Row-streaming kernel (StreamTile): one B row at a time, each row read once front to back,
// partial sums of the mr x n result in t.acc (plain loops the compiler vectorises).
constexpr int kStreamMaxRows = 8;

void stream(const StreamTile& t) {
  const int64_t n = t.n;
  for (int64_t p = 0; p < t.k; ++p) {
    const float* b = t.b + p * t.ldb;
    for (int i = 0; i < t.mr; ++i) {
      const float ai = t.a[i * t.a_row_stride + p * t.a_stride];
      float* acc = t.acc + i * n;
      if (p == 0)
        for (int64_t j = 0; j < n; ++j) acc[j] = ai * b[j];
      else
        for (int64_t j = 0; j < n; ++j) acc[j] += ai * b[j];
    }
  }
  const bool read_c = t.beta != 0.0f;
  for (int i = 0; i < t.mr; ++i) {
    const float* acc = t.acc + i * n;
    float* c = t.c + i * t.ldc;
    float row = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      float v = t.alpha * acc[j];
      if (read_c) v += t.beta * c[j];
      c[j] = v;
      row += v;
      if (t.col_sums) t.col_sums[j] += v;
    }
    if (t.row_sums) t.row_sums[i] += row;
  }
}

const KernelSet kSet = {"sgemm_portable_4x16", 4, 16, kMaxRows, false, {0, 32, 32, 32, 32, 32, 32, 32}, &micro, nullptr, nullptr, 0, 0, &stream, kStreamMaxRows};

}  // namespace

const KernelSet* portable_kernels() { return &kSet; }

}  // namespace gemm_internal
}  // namespace kintsugi
