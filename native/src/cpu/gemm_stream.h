// The row-streaming driver (StreamTile) shared by the wide-ISA sgemm files (gemm_avx2.cc,
// gemm_avx512.cc): the ISA-independent loops around an ISA's register-chunk kernel. B is walked
// Isa::kRows whole rows at a time. For each chunk of NV vectors of columns, the M x NV partial
// sums come from `acc` (or start at zero), take the row group's rank-1 updates from the rows'
// chunks, and go back to `acc` (or, after the last row group, to C). The A values of a row group
// are copied to a small contiguous block first, so both op(A) layouts broadcast from L1.
//
// Include only from files compiled with wide-ISA flags. Everything here sits in an anonymous
// namespace, so each ISA file compiles its own copy with its own flags and nothing is shared
// with baseline code through the linker (see gemm_internal.h on ODR).
#pragma once
#include <cstdint>

#include "gemm_internal.h"

namespace kintsugi {
namespace gemm_internal {
namespace {

constexpr int kStreamMaxRows = 8;

struct StreamChunk {
  const float* al;  // A block: A(i, p0 + r) at al[r * M + i]
  int kb;
  const float* b;   // B(p0, j) for the chunk's first column j
  int64_t ldb;
  float* acc;       // acc + i * accld: row i of the chunk's partial sums
  int64_t accld;
  float* c;
  int64_t ldc;
  bool first, last;
  float alpha, beta;
  float* row_sums;
  float* col_sums;
};

// Isa describes the ISA's chunk kernel:
//   kLanes            floats per vector
//   kRows             B rows per row group
//   Mask              the lane-mask type; full_mask() (all lanes), tail_mask(n) (the first n < kLanes)
//   width(m)          vectors per chunk for m rows (its register budget)
//   chunk<M, NV, MASKED>(const StreamChunk&, Mask)   one chunk; MASKED: the last vector is
//                     partial, its lanes given by the mask
template <typename Isa, int M>
void stream_rows(const StreamTile& t) {
  constexpr int L = Isa::kLanes;
  constexpr int NV = Isa::width(M);
  constexpr int W = L * NV;
  constexpr int kRows = Isa::kRows;
  alignas(4 * L) float al[kRows * M];
  const int64_t n = t.n;
  const int64_t n_full = n / W * W;
  const typename Isa::Mask full = Isa::full_mask();
  StreamChunk s;
  s.ldb = t.ldb;
  s.accld = n;
  s.ldc = t.ldc;
  s.alpha = t.alpha;
  s.beta = t.beta;
  s.row_sums = t.row_sums;
  for (int64_t p0 = 0; p0 < t.k; p0 += kRows) {
    const int kb = t.k - p0 < kRows ? int(t.k - p0) : kRows;
    for (int r = 0; r < kb; ++r)
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) al[r * M + i] = t.a[i * t.a_row_stride + (p0 + r) * t.a_stride];
    s.al = al;
    s.kb = kb;
    s.first = p0 == 0;
    s.last = p0 + kb >= t.k;
    const float* brow = t.b + p0 * t.ldb;
    int64_t j = 0;
    for (; j < n_full; j += W) {
      s.b = brow + j;
      s.acc = t.acc + j;
      s.c = t.c + j;
      s.col_sums = t.col_sums ? t.col_sums + j : nullptr;
      Isa::template chunk<M, NV, false>(s, full);
    }
    for (; j < n; j += L) {
      s.b = brow + j;
      s.acc = t.acc + j;
      s.c = t.c + j;
      s.col_sums = t.col_sums ? t.col_sums + j : nullptr;
      if (n - j >= L)
        Isa::template chunk<M, 1, false>(s, full);
      else
        Isa::template chunk<M, 1, true>(s, Isa::tail_mask(n - j));
    }
  }
}

// The StreamKernel entry point: dispatches on the row count (1 <= t.mr <= kStreamMaxRows).
template <typename Isa>
void stream(const StreamTile& t) {
  static constexpr StreamKernel kKernels[kStreamMaxRows + 1] = {nullptr,
                                                                &stream_rows<Isa, 1>, &stream_rows<Isa, 2>,
                                                                &stream_rows<Isa, 3>, &stream_rows<Isa, 4>,
                                                                &stream_rows<Isa, 5>, &stream_rows<Isa, 6>,
                                                                &stream_rows<Isa, 7>, &stream_rows<Isa, 8>};
  kKernels[t.mr](t);
}

}  // namespace
}  // namespace gemm_internal
}  // namespace kintsugi
